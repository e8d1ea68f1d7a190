"""Argument types shared by the management commands."""

from argparse import ArgumentTypeError


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a count, a size, seconds)."""
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise ArgumentTypeError(f"{text} is not at least 1")
    return value
