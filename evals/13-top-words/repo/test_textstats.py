import unittest

from textstats import top_words, word_counts, words


class Words(unittest.TestCase):
    def test_case_and_punctuation(self):
        self.assertEqual(words("Hello, hello!"), ["hello", "hello"])

    def test_apostrophe_and_dashes(self):
        self.assertEqual(words("Don't stop -- now."), ["don't", "stop", "now"])

    def test_counts(self):
        self.assertEqual(word_counts("A a b."), {"a": 2, "b": 1})


class TopWords(unittest.TestCase):
    def test_most_common_first(self):
        text = "The cat and the hat. The end!"
        self.assertEqual(top_words(text, 2), [("the", 3), ("and", 1)])

    def test_ties_alphabetical(self):
        self.assertEqual(top_words("b a b a c", 3), [("a", 2), ("b", 2), ("c", 1)])

    def test_fewer_words_than_n(self):
        self.assertEqual(top_words("one", 5), [("one", 1)])


if __name__ == "__main__":
    unittest.main()
