"""Bank accounts with a history of operations (amounts in cents)."""


class InsufficientFunds(Exception):
    pass


class Account:
    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance
        self.history = []

    def deposit(self, amount):
        if amount <= 0:
            raise ValueError("a deposit must be positive")
        self.balance += amount
        self.history.append(("deposit", amount))

    def withdraw(self, amount):
        """Take amount out; raise InsufficientFunds (and change nothing)
        when the balance is too small."""
        if amount <= 0:
            raise ValueError("a withdrawal must be positive")
        self.balance -= amount
        if self.balance < 0:
            raise InsufficientFunds(f"{self.owner} cannot withdraw {amount}")
        self.history.append(("withdraw", amount))

    def transfer(self, other, amount):
        """Move amount from this account to other."""
        self.withdraw(amount)
        other.deposit(amount)
