"""Temperature conversions."""


def c_to_f(celsius):
    """Degrees Celsius to degrees Fahrenheit."""
    return celsius * 9 / 5 + 32


def f_to_c(fahrenheit):
    """Degrees Fahrenheit to degrees Celsius."""
    return fahrenheit - 32 * 5 / 9


def describe(celsius):
    """A short description of a temperature in Celsius."""
    if celsius <= 0:
        return "freezing"
    if celsius < 20:
        return "cold"
    if celsius < 30:
        return "warm"
    return "hot"
