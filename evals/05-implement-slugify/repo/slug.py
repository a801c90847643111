"""URL slugs for page titles."""


def slugify(text):
    """Turn a title into a URL slug.

    - Everything is lowercased.
    - Every run of characters that are not a-z or 0-9 becomes one hyphen.
    - The slug never starts or ends with a hyphen.

    >>> slugify("Hello, World!")
    'hello-world'
    >>> slugify("  Rust  2024 -- what's new?  ")
    'rust-2024-what-s-new'
    """
    raise NotImplementedError
