import unittest

from account import Account, InsufficientFunds


class Withdraw(unittest.TestCase):
    def test_withdraw(self):
        a = Account("ann", 100)
        a.withdraw(30)
        self.assertEqual(a.balance, 70)
        self.assertEqual(a.history, [("withdraw", 30)])

    def test_whole_balance(self):
        a = Account("ann", 100)
        a.withdraw(100)
        self.assertEqual(a.balance, 0)

    def test_refused_withdrawal_changes_nothing(self):
        a = Account("ann", 100)
        with self.assertRaises(InsufficientFunds):
            a.withdraw(150)
        self.assertEqual(a.balance, 100)
        self.assertEqual(a.history, [])


class Transfer(unittest.TestCase):
    def test_transfer(self):
        a, b = Account("ann", 100), Account("bob")
        a.transfer(b, 40)
        self.assertEqual((a.balance, b.balance), (60, 40))

    def test_refused_transfer(self):
        a, b = Account("ann", 10), Account("bob", 5)
        with self.assertRaises(InsufficientFunds):
            a.transfer(b, 40)
        self.assertEqual((a.balance, b.balance), (10, 5))


if __name__ == "__main__":
    unittest.main()
