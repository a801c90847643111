"""Small maths helpers."""


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def factorial(n):
    if n < 0:
        raise ValueError("factorial of a negative number")
    result = 1
    for k in range(1, n):
        result *= k
    return result


def mean(values):
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)


def is_prime(n):
    if n < 2:
        return False
    k = 2
    while k * k <= n:
        if n % k == 0:
            return False
        k += 1
    return True
