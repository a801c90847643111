import unittest

from settings import parse_line, parse_settings


class ParseLine(unittest.TestCase):
    def test_simple(self):
        self.assertEqual(parse_line("name = demo"), ("name", "demo"))

    def test_blank_and_comment(self):
        self.assertIsNone(parse_line("   "))
        self.assertIsNone(parse_line("  # a comment"))

    def test_value_with_equals(self):
        self.assertEqual(parse_line("token = abc=="), ("token", "abc=="))


class ParseSettings(unittest.TestCase):
    def test_url_value(self):
        text = "# server\nurl = https://example.com/?a=1&b=2\nretries=3\n"
        self.assertEqual(parse_settings(text), {
            "url": "https://example.com/?a=1&b=2",
            "retries": "3",
        })

    def test_later_line_wins(self):
        self.assertEqual(parse_settings("a = 1\na = 2"), {"a": "2"})


if __name__ == "__main__":
    unittest.main()
