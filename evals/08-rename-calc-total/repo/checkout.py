"""The receipt printed at the till."""

from pricing import calc_total


def receipt(items):
    """One line per item, then the total with tax."""
    lines = [f"{n} x{q}: {p * q:.2f}" for n, p, q in items]
    lines.append(f"TOTAL: {calc_total(items):.2f}")
    return "\n".join(lines)
