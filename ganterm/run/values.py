"""What a metrics row may hold, turned into it where every loop's rows pass: whole-number steps and plain numbers.

Readers drop a row that breaks `jsonl.ROW_RULE` whole, and the JSON encoder
fails a whole write on a value it cannot encode; so a value is judged on its
own, when it is logged: a number is kept, something that is unambiguously one
(a bool, a numpy scalar, a one-element array or tensor, an int past 64 bits)
is turned into one, and anything else is refused by name, costing no other
value and no other row. torch-free: tensors are recognised by what they offer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from ganterm.errors import UserError
from ganterm.run.text import clip

# A row's own fields (`step`, `t`) and the exported tables' run column (`run`): never a metric's name.
RESERVED_NAMES = ("step", "t", "run")
CONFIG_PREFIX = "config."  # a loop's config= goes into exported tables as config.<key> columns
NAME_LIMIT = 128  # a name is a column, a panel title and a TensorBoard tag
QUOTE_LIMIT = 80  # characters of a bad value quoted in an error, the note of the cut included
INT64 = (-(2**63), 2**63 - 1)  # what the JSON encoder writes as an integer
ACCEPTED = "a number (int, float, bool, a numpy scalar, a one-element tensor or array) or None"


class BadValue(UserError):
    """A value a metrics row cannot hold, named with its key."""


def check_name(name: Any) -> str:
    """A metric's name: text of 1 to NAME_LIMIT characters, none of the RESERVED_NAMES."""
    if not isinstance(name, str) or not 0 < len(name) <= NAME_LIMIT:
        raise BadValue(f"metric name {_short(name)} is not a name of 1 to {NAME_LIMIT} characters")
    if name.startswith(CONFIG_PREFIX):
        raise BadValue(
            f"metric name {name!r} is reserved: names starting {CONFIG_PREFIX!r} are the exported tables' "
            "columns of the run's config=; log it under another name"
        )
    if name in RESERVED_NAMES:
        raise BadValue(
            f"metric name {name!r} is reserved: {', '.join(RESERVED_NAMES)} are the row's step and time and "
            "the exported tables' run column; log it under another name"
        )
    return name


def loggable(name: str, value: Any) -> Any:
    """`value` as a row will hold it; a tensor stays one, to be read back with the others at the flush.

    A tensor is judged by its shape and type alone: reading its number here would be a device sync per value.
    """
    if _is_tensor(value):
        if value.numel() != 1 or value.is_complex():
            kind = "a complex tensor" if value.is_complex() else f"a tensor of {value.numel()} elements"
            raise _refused(name, kind, "reduce it to one real number first (.mean(), say)")
        kind = _unreadable_kind(value)
        if kind:  # read back at the flush with the others, it would fail that flush and every later one
            raise _refused(name, f"a {kind} tensor", "read it into a plain tensor first")
        # a copy: a tensor the loop goes on changing in place (an EMA, a counter) keeps this step's value
        return value.detach().clone()
    return number(name, value)


def number(name: str, value: Any) -> int | float | None:
    """`value` as a plain number (None is null, as NaN and infinity are written), or BadValue naming `name`."""
    try:
        return _number(name, value)
    except BadValue:
        raise
    except (ArithmeticError, TypeError, ValueError, RecursionError):  # a Fraction past a float, a timedelta64...
        raise _refused(name, f"{type(value).__name__} {_short(value)}", "") from None


def _number(name: str, value: Any) -> int | float | None:
    if value is None or isinstance(value, float):
        return value if value is None else float(value)  # numpy's float64 is a float: a plain one is written
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        whole = int(value)
        if INT64[0] <= whole <= INT64[1]:
            return whole
        try:
            return float(whole)  # the encoder writes no integer past 64 bits; a float keeps its size
        except OverflowError:
            raise BadValue(f"metric {name!r} is an int too large even for a float; log {ACCEPTED}") from None
    if isinstance(value, numbers.Real):
        return float(value)
    if _one_element(value):
        return _number(name, value.item())
    raise _refused(name, f"{type(value).__name__} {_short(value)}", "")


def loggable_step(value: Any) -> Any:
    """A step as `log` takes it: checked now, or, for a tensor, by its shape now and by `step_number` at the flush."""
    return loggable("step", value) if _is_tensor(value) else step_number(value)


def step_number(value: Any) -> int:
    """A row's step: a whole number from 0 to 2**63 - 1, however it was handed over."""
    try:
        step = None if isinstance(value, bool) else number("step", value)
    except BadValue:
        step = None
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    if not isinstance(step, int) or not 0 <= step <= INT64[1]:
        raise BadValue(f"the step must be a whole number from 0 to 2**63 - 1, not {_short(value)}")
    return step


def loggable_values(values: dict[str, Any], computed: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The values a row may hold (`loggable`), and by name why each other one was left out.

    `computed`: names the writer fills in itself (img_per_s, with images_per_step), refused from the loop.
    """
    return _checked(values, loggable, computed)


def plain_row(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """`row` with plain numbers only, and by name why each value left out was left out.

    BadValue when the row itself is unusable: its step or its time `t` (finite unix seconds) is not one.
    """
    step = step_number(row.get("step"))
    t = number("t", row.get("t"))
    if t is None or not math.isfinite(t):
        raise BadValue(f"the row's time t must be a finite number of unix seconds, not {_short(row.get('t'))}")
    kept, problems = _checked({k: v for k, v in row.items() if k not in ("step", "t")}, number)
    return {"step": step, "t": t, **kept}, problems


def _checked(
    values: dict[str, Any], convert: Callable[[str, Any], Any], computed: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    kept, problems = {}, {}
    for name, value in values.items():
        try:
            if name in computed:
                raise BadValue(f"metric {name!r} is computed by ganterm for this run; log it under another name")
            kept[check_name(name)] = convert(name, value)
        except BadValue as error:
            problems[str(name)] = str(error)
    return kept, problems


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "numel")


def _one_element(value: Any) -> bool:
    """A tensor, array or numpy scalar of one element, read with `.item()`."""
    if not hasattr(value, "item"):
        return False
    size = value.numel() if _is_tensor(value) else getattr(value, "size", None)
    return size == 1


def _unreadable_kind(tensor: Any) -> str | None:
    """What keeps a one-element tensor from being read back with the others, if anything does."""
    if tensor.device.type == "meta":
        return "meta"
    if tensor.is_quantized:
        return "quantized"
    return None if str(tensor.layout) == "torch.strided" else "sparse"


def _refused(name: str, what: str, advice: str) -> BadValue:
    return BadValue(f"metric {name!r} is not a number but {what}; {advice or 'log ' + ACCEPTED}")


def _short(value: Any) -> str:
    """A value as an error sentence quotes it: its repr, clipped to a line's part."""
    return clip(repr(value), QUOTE_LIMIT)
