import unittest

from lists import chunks, first_n, last_n


class FirstN(unittest.TestCase):
    def test_first_two(self):
        self.assertEqual(first_n([1, 2, 3], 2), [1, 2])

    def test_more_than_there_are(self):
        self.assertEqual(first_n([1], 3), [1])


class LastN(unittest.TestCase):
    def test_last_two(self):
        self.assertEqual(last_n([1, 2, 3, 4, 5], 2), [4, 5])

    def test_zero(self):
        self.assertEqual(last_n([1, 2, 3], 0), [])

    def test_more_than_there_are(self):
        self.assertEqual(last_n([1, 2, 3], 5), [1, 2, 3])

    def test_empty(self):
        self.assertEqual(last_n([], 3), [])


class Chunks(unittest.TestCase):
    def test_chunks(self):
        self.assertEqual(chunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]])


if __name__ == "__main__":
    unittest.main()
