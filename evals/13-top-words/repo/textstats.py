"""Word statistics for plain text."""


def words(text):
    """The words of text, lowercased, without the punctuation around them.

    "Hello, hello!" gives ["hello", "hello"]. An apostrophe inside a word
    stays ("don't"); a token made only of punctuation ("--") is no word.
    """
    return text.split()


def word_counts(text):
    """How often each word occurs: {word: count}."""
    counts = {}
    for word in words(text):
        counts[word] = counts.get(word, 0) + 1
    return counts


def top_words(text, n):
    """The n most common words as (word, count) pairs, most common first;
    words with the same count in alphabetical order."""
    counts = word_counts(text)
    return sorted(counts.items(), key=lambda pair: pair[1])[:n]
