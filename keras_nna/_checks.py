"""Argument validators shared by the public API.

Every public constructor or function that takes a number checks it here, so
NaN, infinities, booleans and out-of-range values are refused with one kind
of message: what was expected, what was received and (optionally) a fix.
A NaN passes comparisons such as ``threshold < 0`` silently; these helpers
test finiteness first.

Example:

>>> check_number("alpha", 0.5, low=0.0, high=1.0)
0.5
>>> check_number("threshold", float("nan"), low=0.0)
Traceback (most recent call last):
...
ValueError: Expected `threshold` to be a finite number >= 0. Received: threshold=nan.
"""

import math
import numbers

import numpy as np

__all__ = ["check_number", "check_choice"]


def _fmt(bound):
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _describe(low, high, low_open, high_open, integer):
    what = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        return (f"{what} in {'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}"
                f"{')' if high_open else ']'}")
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {_fmt(low)}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {_fmt(high)}")
    return what + (" " + " and ".join(bounds) if bounds else "")


def _as_scalar(value):
    """A Python/numpy real scalar from `value` (0-d arrays and tensors unwrapped), or `None`."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Real):
        return value
    if hasattr(value, "shape") and tuple(getattr(value, "shape", ())) == () and hasattr(value, "dtype"):
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001 - any non-convertible object is "not a number"
            return None
        if array.dtype.kind in "iuf":
            return array.item()
    return None


def check_number(name, value, *, low=None, high=None, low_open=False, high_open=False,
                 integer=False, allow_none=False, fix=""):
    """Validates a numeric argument and returns it as a Python `int` or `float`.

    Args:
        name: The argument's name, for the message.
        value: The value received.
        low: Smallest allowed value, or `None` for no lower bound. Defaults to `None`.
        high: Largest allowed value, or `None` for no upper bound. Defaults to `None`.
        low_open: Whether `low` itself is excluded. Defaults to `False`.
        high_open: Whether `high` itself is excluded. Defaults to `False`.
        integer: Whether the value must be an integer (a float such as `4.0`
            is refused too). Defaults to `False`.
        allow_none: Whether `None` is accepted (and returned). Defaults to `False`.
        fix: A sentence appended to the message saying how to fix it. Defaults to `""`.

    Returns:
        The value as `int` (if `integer`) or `float`, or `None` when allowed.

    Raises:
        TypeError: If `value` is not a real number (a `bool`, a string, `None`
            when not allowed, or a float where an integer is expected).
        ValueError: If `value` is NaN, infinite or outside the range.

    Example:

    >>> check_number("frequency", 10, low=1, integer=True)
    10
    >>> check_number("bits", 4.0, low=1, high=8, integer=True)
    Traceback (most recent call last):
    ...
    TypeError: Expected `bits` to be an integer in [1, 8]. Received: bits=4.0 (float).
    """
    expected = _describe(low, high, low_open, high_open, integer)
    tail = f" {fix}" if fix else ""
    if value is None and allow_none:
        return None
    scalar = _as_scalar(value)
    if scalar is None or (integer and not isinstance(scalar, (numbers.Integral, np.integer))):
        raise TypeError(f"Expected `{name}` to be {expected}. Received: {name}={value!r} "
                        f"({type(value).__name__}).{tail}")
    if integer:
        result = int(scalar)
    else:
        result = float(scalar)
        if not math.isfinite(result):
            raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={result}.{tail}")
    too_low = low is not None and (result <= low if low_open else result < low)
    too_high = high is not None and (result >= high if high_open else result > high)
    if too_low or too_high:
        raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}.{tail}")
    return result


def check_choice(name, value, choices):
    """Validates that `value` is one of `choices` and returns it.

    Args:
        name: The argument's name, for the message.
        value: The value received.
        choices: The allowed values.

    Returns:
        `value`.

    Raises:
        ValueError: If `value` is not one of `choices`.

    Example:

    >>> check_choice("scope", "layer", ("layer", "global"))
    'layer'
    """
    if value not in choices:
        raise ValueError(f"Unknown `{name}`={value!r}. Expected one of {list(choices)}.")
    return value
