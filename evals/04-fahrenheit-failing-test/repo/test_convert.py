import unittest

from convert import c_to_f, describe, f_to_c


class CelsiusToFahrenheit(unittest.TestCase):
    def test_boiling(self):
        self.assertAlmostEqual(c_to_f(100), 212)

    def test_freezing(self):
        self.assertAlmostEqual(c_to_f(0), 32)


class FahrenheitToCelsius(unittest.TestCase):
    def test_boiling(self):
        self.assertAlmostEqual(f_to_c(212), 100)

    def test_freezing(self):
        self.assertAlmostEqual(f_to_c(32), 0)

    def test_round_trip(self):
        for c in (-40, -3.5, 0, 21, 37):
            self.assertAlmostEqual(f_to_c(c_to_f(c)), c)


class Describe(unittest.TestCase):
    def test_words(self):
        self.assertEqual(describe(-5), "freezing")
        self.assertEqual(describe(25), "warm")


if __name__ == "__main__":
    unittest.main()
