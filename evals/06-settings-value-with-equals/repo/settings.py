"""Read settings files made of `key = value` lines."""


def parse_line(line):
    """Parse one line of a settings file.

    Returns (key, value) with the spaces around each removed, or None for a
    blank line or a comment (a line whose first non-space character is '#').
    Only the first '=' separates the key from the value: the value may itself
    contain '=' (base64 strings, URLs with query strings).
    """
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    key, value = line.split("=")
    return key.strip(), value.strip()


def parse_settings(text):
    """All the settings in text, as a dict (a later line wins)."""
    settings = {}
    for line in text.splitlines():
        parsed = parse_line(line)
        if parsed is not None:
            key, value = parsed
            settings[key] = value
    return settings
