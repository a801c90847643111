import unittest

from orders import add_item, item_count, new_order


class Orders(unittest.TestCase):
    def test_add(self):
        order = add_item(new_order("ann"), "tea")
        self.assertEqual(order["items"], ["tea"])
        self.assertEqual(item_count(order), 1)

    def test_orders_do_not_share_items(self):
        add_item(new_order("ann"), "tea")
        self.assertEqual(new_order("bob")["items"], [])

    def test_callers_list_is_copied(self):
        start = ["milk"]
        order = add_item(new_order("cy", start), "eggs")
        self.assertEqual(order["items"], ["milk", "eggs"])
        self.assertEqual(start, ["milk"])


if __name__ == "__main__":
    unittest.main()
