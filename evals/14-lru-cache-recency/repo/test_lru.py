import unittest

from lru import LRUCache


class Basics(unittest.TestCase):
    def test_get_and_put(self):
        c = LRUCache(2)
        c.put("a", 1)
        self.assertEqual(c.get("a"), 1)
        self.assertIsNone(c.get("zz"))
        self.assertEqual(c.get("zz", 0), 0)

    def test_evicts_least_recently_put(self):
        c = LRUCache(2)
        c.put("a", 1)
        c.put("b", 2)
        c.put("c", 3)
        self.assertEqual(c.keys(), ["b", "c"])


class Recency(unittest.TestCase):
    def test_get_counts_as_use(self):
        c = LRUCache(2)
        c.put("a", 1)
        c.put("b", 2)
        c.get("a")
        c.put("c", 3)
        self.assertEqual(c.keys(), ["a", "c"])
        self.assertIsNone(c.get("b"))

    def test_put_existing_key(self):
        c = LRUCache(2)
        c.put("a", 1)
        c.put("b", 2)
        c.put("b", 20)
        self.assertEqual(len(c), 2)
        self.assertEqual(c.keys(), ["a", "b"])
        self.assertEqual(c.get("b"), 20)
        self.assertEqual(c.get("a"), 1)

    def test_put_existing_key_counts_as_use(self):
        c = LRUCache(2)
        c.put("a", 1)
        c.put("b", 2)
        c.put("a", 10)
        c.put("c", 3)
        self.assertEqual(c.keys(), ["a", "c"])
        self.assertEqual(c.get("a"), 10)


if __name__ == "__main__":
    unittest.main()
