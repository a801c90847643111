"""Prices of a shopping basket: items are (name, unit_price, quantity)."""

TAX_RATE = 0.2


def subtotal(items):
    """The price of items before tax."""
    return sum(price * qty for _, price, qty in items)


def calc_total(items, tax_rate=TAX_RATE):
    """The price of items with tax, rounded to cents."""
    return round(subtotal(items) * (1 + tax_rate), 2)
