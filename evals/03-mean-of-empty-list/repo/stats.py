"""Simple statistics over lists of numbers."""


def mean(values, default=0.0):
    """The arithmetic mean of values, or `default` when values is empty."""
    return sum(values) / len(values)


def median(values, default=0.0):
    """The middle value of values (the mean of the two middle ones for an
    even count), or `default` when values is empty."""
    if not values:
        return default
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
