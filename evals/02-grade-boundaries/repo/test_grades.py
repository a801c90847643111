import unittest

from grades import is_passing, letter_grade


class LetterGrade(unittest.TestCase):
    def test_middle_of_each_band(self):
        for score, grade in [(95, "A"), (85, "B"), (75, "C"), (65, "D"), (30, "F")]:
            self.assertEqual(letter_grade(score), grade, score)

    def test_boundaries(self):
        for score, grade in [(100, "A"), (90, "A"), (89, "B"), (80, "B"),
                             (79, "C"), (70, "C"), (69, "D"), (60, "D"), (59, "F")]:
            self.assertEqual(letter_grade(score), grade, score)

    def test_passing(self):
        self.assertTrue(is_passing(60))
        self.assertFalse(is_passing(59))


if __name__ == "__main__":
    unittest.main()
