import unittest

import pricing
from checkout import receipt
from pricing import subtotal, total_price

BASKET = [("tea", 2.5, 2), ("cake", 3.0, 1)]


class Pricing(unittest.TestCase):
    def test_subtotal(self):
        self.assertEqual(subtotal(BASKET), 8.0)

    def test_total_price(self):
        self.assertEqual(total_price(BASKET), 9.6)
        self.assertEqual(total_price(BASKET, tax_rate=0), 8.0)

    def test_old_name_is_gone(self):
        self.assertFalse(hasattr(pricing, "calc_total"))


class Receipt(unittest.TestCase):
    def test_receipt(self):
        self.assertEqual(receipt(BASKET), "tea x2: 5.00\ncake x1: 3.00\nTOTAL: 9.60")


if __name__ == "__main__":
    unittest.main()
