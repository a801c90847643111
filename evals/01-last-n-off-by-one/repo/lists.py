"""Small helpers for working with lists."""


def first_n(items, n):
    """Return the first n items (all of them if there are fewer than n)."""
    if n <= 0:
        return []
    return items[:n]


def last_n(items, n):
    """Return the last n items, in their original order.

    Returns all of them if there are fewer than n, and [] when n is 0.
    """
    return items[len(items) - n - 1:]


def chunks(items, size):
    """Split items into lists of `size` items (the last one may be shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]
