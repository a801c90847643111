import unittest

from stats import mean, median


class Mean(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([2, 4, 6]), 4)

    def test_empty(self):
        self.assertEqual(mean([]), 0.0)

    def test_empty_with_default(self):
        self.assertIsNone(mean([], default=None))


class Median(unittest.TestCase):
    def test_odd(self):
        self.assertEqual(median([3, 1, 2]), 2)

    def test_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)

    def test_empty(self):
        self.assertEqual(median([], default=-1), -1)


if __name__ == "__main__":
    unittest.main()
