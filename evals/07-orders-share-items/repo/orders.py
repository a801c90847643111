"""Customer orders."""


def new_order(customer, items=[]):
    """A new order for customer.

    The order starts with a copy of `items` (none when it is not given):
    adding to the order never changes the caller's list, and two orders
    never share their items.
    """
    return {"customer": customer, "items": items}


def add_item(order, item):
    """Add item to order and return the order."""
    order["items"].append(item)
    return order


def item_count(order):
    return len(order["items"])
