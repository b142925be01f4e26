"""Up-front argument validation shared by kerascnn's public constructors.

In the style of keras' `keras/src/utils/argument_validation.py`: every check
raises a `ValueError` (wrong value) or `TypeError` (wrong type) whose message
names the argument, says what was expected and ends with
`Received: name=value`, and returns the normalized value (a Python `int`,
`float`, `bool` or `str`), so that a constructor can write
`self.patience = check_positive_int(patience, "patience")`.

This module imports neither TensorFlow nor Keras (nor NumPy) so that it can be
used by the command-line parser; NumPy scalars are accepted through the
`numbers` ABCs they register with.

Example:

```python
from kerascnn import _checks

_checks.check_positive_int(3, "patience")  # -> 3
_checks.check_one_of("max", "mode", ("min", "max"))  # -> "max"
_checks.check_positive_int(0, "patience")
# ValueError: patience must be an integer >= 1. Received: patience=0
```
"""

import math
import numbers
import os

__all__ = [
    "check_bool",
    "check_callable",
    "check_float_dtype",
    "check_fraction",
    "check_int",
    "check_int_sequence",
    "check_keras_object",
    "check_non_negative_int",
    "check_non_negative_number",
    "check_number",
    "check_one_of",
    "check_optional",
    "check_path",
    "check_positive_int",
    "check_positive_number",
    "check_string",
    "check_verbose",
    "env_limit",
    "received",
]

_MAX_REPR = 200


def received(name, value):
    """Returns the `Received: name=value` tail of an error message.

    Long representations are shortened to about 200 characters.
    """
    text = repr(value)
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 15] + "..." + text[-12:]
    return f"Received: {name}={text}"


def _fail(name, value, requirement, error=ValueError):
    raise error(f"{name} must be {requirement}. {received(name, value)}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _is_bool(value):
    kind = type(value)
    return isinstance(value, bool) or (
        kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")
    )


def _is_real(value):
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _bounds_text(kind, min_value, max_value, min_inclusive=True, max_inclusive=True):
    parts = []
    if min_value is not None:
        parts.append(f"{'>=' if min_inclusive else '>'} {min_value}")
    if max_value is not None:
        parts.append(f"{'<=' if max_inclusive else '<'} {max_value}")
    if not parts:
        return kind
    return f"{kind} " + " and ".join(parts)


def check_int(value, name, *, min_value=None, max_value=None, allow_none=False):
    """Checks that `value` is an integer (not a bool) within optional bounds.

    Args:
        value: the value to check.
        name: the argument's name, used in the error message.
        min_value: inclusive lower bound, or `None` (default) for none.
        max_value: inclusive upper bound, or `None` (default) for none.
        allow_none: whether `None` is accepted (and returned). Defaults to
            `False`.

    Returns:
        `value` as a Python `int` (or `None`).

    Raises:
        ValueError: if `value` is not an integer or is out of bounds.
    """
    if value is None and allow_none:
        return None
    requirement = _bounds_text("an integer", min_value, max_value)
    if allow_none:
        requirement = "None or " + requirement
    ok = _is_int(value)
    if ok and min_value is not None and value < min_value:
        ok = False
    if ok and max_value is not None and value > max_value:
        ok = False
    if not ok:
        _fail(name, value, requirement)
    return int(value)


def check_positive_int(value, name, *, max_value=None, allow_none=False):
    """Checks that `value` is an integer >= 1 (and <= `max_value` if given)."""
    return check_int(value, name, min_value=1, max_value=max_value, allow_none=allow_none)


def check_non_negative_int(value, name, *, max_value=None, allow_none=False):
    """Checks that `value` is an integer >= 0 (and <= `max_value` if given)."""
    return check_int(value, name, min_value=0, max_value=max_value, allow_none=allow_none)


def check_number(
    value,
    name,
    *,
    min_value=None,
    max_value=None,
    min_inclusive=True,
    max_inclusive=True,
    allow_none=False,
):
    """Checks that `value` is a finite real number (not a bool) within bounds.

    Args:
        value: the value to check.
        name: the argument's name, used in the error message.
        min_value: lower bound, or `None` (default) for none.
        max_value: upper bound, or `None` (default) for none.
        min_inclusive: whether `min_value` itself is accepted. Defaults to
            `True`.
        max_inclusive: whether `max_value` itself is accepted. Defaults to
            `True`.
        allow_none: whether `None` is accepted (and returned). Defaults to
            `False`.

    Returns:
        `value` as a Python `float` (or `None`).

    Raises:
        ValueError: if `value` is not a finite number or is out of bounds.
    """
    if value is None and allow_none:
        return None
    kind = "a finite number"
    requirement = _bounds_text(kind, min_value, max_value, min_inclusive, max_inclusive)
    if allow_none:
        requirement = "None or " + requirement
    ok = _is_real(value) and math.isfinite(value)
    if ok and min_value is not None:
        ok = value >= min_value if min_inclusive else value > min_value
    if ok and max_value is not None:
        ok = value <= max_value if max_inclusive else value < max_value
    if not ok:
        _fail(name, value, requirement)
    return float(value)


def check_positive_number(value, name, *, max_value=None, allow_none=False):
    """Checks that `value` is a finite number > 0 (and <= `max_value`)."""
    return check_number(
        value,
        name,
        min_value=0,
        min_inclusive=False,
        max_value=max_value,
        allow_none=allow_none,
    )


def check_non_negative_number(value, name, *, max_value=None, allow_none=False):
    """Checks that `value` is a finite number >= 0 (and <= `max_value`)."""
    return check_number(value, name, min_value=0, max_value=max_value, allow_none=allow_none)


def check_fraction(value, name, *, include_zero=True, include_one=False, allow_none=False):
    """Checks that `value` is a number in [0, 1) (bounds configurable).

    Args:
        value: the value to check.
        name: the argument's name.
        include_zero: whether 0 is accepted. Defaults to `True`.
        include_one: whether 1 is accepted. Defaults to `False`.
        allow_none: whether `None` is accepted. Defaults to `False`.
    """
    return check_number(
        value,
        name,
        min_value=0,
        max_value=1,
        min_inclusive=include_zero,
        max_inclusive=include_one,
        allow_none=allow_none,
    )


def check_bool(value, name, *, allow_none=False):
    """Checks that `value` is a bool (Python or NumPy); raises `TypeError`."""
    if value is None and allow_none:
        return None
    if not _is_bool(value):
        _fail(name, value, "None or a bool" if allow_none else "a bool", TypeError)
    return bool(value)


def check_string(value, name, *, allow_none=False, allow_empty=False):
    """Checks that `value` is a (non-empty) string; raises `TypeError`."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        _fail(name, value, "None or a string" if allow_none else "a string", TypeError)
    if not allow_empty and not value:
        _fail(name, value, "a non-empty string")
    return value


def check_one_of(value, name, options, *, allow_none=False):
    """Checks that `value` is one of `options` (compared with `==`).

    Raises `ValueError` naming the options. Strings are compared exactly
    (case-sensitive); bools never match integer options.
    """
    if value is None and allow_none:
        return None
    options = tuple(options)
    for option in options:
        if _is_bool(value) != _is_bool(option):
            continue
        try:
            if type(value) is type(option) or not isinstance(option, str):
                if value == option:
                    return option
        except Exception:  # noqa: BLE001 - exotic __eq__: treat as no match
            continue
    shown = ", ".join(repr(o) for o in options)
    prefix = "None or " if allow_none else ""
    _fail(name, value, f"{prefix}one of {shown}")


def check_verbose(value, name="verbose", *, levels=(0, 1, 2), allow_auto=False):
    """Checks a Keras-style verbosity level (`0`, `1`, `2`, optionally "auto")."""
    options = tuple(levels) + (("auto",) if allow_auto else ())
    return check_one_of(value, name, options)


def check_optional(check, value, name, **kwargs):
    """Returns `None` for `None`, else `check(value, name, **kwargs)`."""
    if value is None:
        return None
    return check(value, name, **kwargs)


def check_path(value, name, *, allow_none=False):
    """Checks that `value` is a non-empty `str` or `os.PathLike`; returns a `str`."""
    if value is None and allow_none:
        return None
    if isinstance(value, os.PathLike):
        value_str = os.fspath(value)
    else:
        value_str = value
    if not isinstance(value_str, str):
        requirement = "a path (str or os.PathLike)"
        _fail(name, value, ("None or " if allow_none else "") + requirement, TypeError)
    if not value_str:
        _fail(name, value, "a non-empty path")
    return value_str


def check_callable(value, name, *, allow_none=False):
    """Checks that `value` is callable; raises `TypeError`."""
    if value is None and allow_none:
        return None
    if not callable(value):
        _fail(name, value, "None or callable" if allow_none else "callable", TypeError)
    return value


def check_int_sequence(value, name, *, length=None, min_value=1, max_value=None):
    """Checks a list/tuple of integers (each within bounds, optional length).

    Returns:
        A tuple of Python ints.
    """
    kind = "integers" if min_value is None else f"integers >= {min_value}"
    if max_value is not None:
        kind += f" and <= {max_value}"
    count = "a sequence of" if length is None else f"a sequence of {length}"
    requirement = f"{count} {kind}"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        _fail(name, value, requirement)
    try:
        items = tuple(value)
    except TypeError:
        _fail(name, value, requirement)
    if length is not None and len(items) != length:
        _fail(name, value, requirement)
    for item in items:
        if not _is_int(item):
            _fail(name, value, requirement)
        if min_value is not None and item < min_value:
            _fail(name, value, requirement)
        if max_value is not None and item > max_value:
            _fail(name, value, requirement)
    return tuple(int(i) for i in items)


_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def check_float_dtype(value, name, *, allow_none=True):
    """Checks a floating-point dtype (a name, NumPy or TensorFlow/Keras dtype).

    Unknown names raise `ValueError`, non-float dtypes too. Returns the
    canonical name (e.g. "float16") or `None`.
    """
    if value is None and allow_none:
        return None
    dtype = getattr(value, "name", value)
    if not isinstance(dtype, str):
        try:
            import numpy as np

            dtype = np.dtype(value).name
        except Exception:  # noqa: BLE001 - any unknown object is a bad dtype
            dtype = None
    if dtype not in _FLOAT_DTYPES:
        prefix = "None or " if allow_none else ""
        shown = ", ".join(repr(d) for d in _FLOAT_DTYPES)
        _fail(name, value, f"{prefix}a float dtype (one of {shown})")
    return dtype


def check_keras_object(getter, value, name, what):
    """Resolves `value` with a Keras getter, naming `name` if it fails.

    Args:
        getter: e.g. `keras.initializers.get`, `keras.regularizers.get`,
            `keras.activations.get`.
        value: the identifier (string, config dict, instance or None).
        name: the argument's name.
        what: what is expected, e.g. "a Keras initializer".

    Returns:
        `getter(value)`.
    """
    try:
        return getter(value)
    except (ValueError, TypeError, AttributeError, KeyError):
        raise ValueError(
            f"{name} must be {what} (a name, a config dict or an instance). {received(name, value)}"
        ) from None


def env_limit(env_var, default):
    """Reads a positive numeric limit from environment variable `env_var`.

    Returns `default` when the variable is unset or empty. A value that is not
    a positive number raises `ValueError` naming the variable.
    """
    raw = os.environ.get(env_var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"Environment variable {env_var} must be a positive number. Received: {env_var}={raw!r}"
        )
    return int(value) if value.is_integer() else value
