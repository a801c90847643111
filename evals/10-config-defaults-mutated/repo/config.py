"""Client configuration: the defaults, with a caller's overrides on top."""

DEFAULTS = {
    "retries": 3,
    "timeout": 10,
    "headers": {"User-Agent": "fetcher/1.0"},
}


def build_config(overrides=None):
    """A new config: DEFAULTS with overrides applied.

    A dict value (such as "headers") is merged into the default dict, other
    values replace the default. DEFAULTS itself never changes.
    """
    config = DEFAULTS
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    return config
