import unittest

from config import DEFAULTS, build_config

ORIGINAL = {"retries": 3, "timeout": 10, "headers": {"User-Agent": "fetcher/1.0"}}


class BuildConfig(unittest.TestCase):
    def test_overrides(self):
        c = build_config({"retries": 5, "headers": {"Accept": "text/html"}})
        self.assertEqual(c["retries"], 5)
        self.assertEqual(c["headers"], {"User-Agent": "fetcher/1.0", "Accept": "text/html"})

    def test_defaults_unchanged(self):
        build_config({"retries": 5})
        self.assertEqual(build_config()["retries"], 3)
        self.assertEqual(DEFAULTS, ORIGINAL)

    def test_headers_do_not_leak(self):
        build_config({"headers": {"Authorization": "secret"}})
        self.assertNotIn("Authorization", build_config()["headers"])
        self.assertEqual(DEFAULTS, ORIGINAL)


if __name__ == "__main__":
    unittest.main()
