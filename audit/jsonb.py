"""JSON read and checked the way the `events` table's jsonb column takes it.

`loads` refuses NaN and Infinity and keeps a number a float cannot hold as
an UnfitNumber, so that validation can name the field it is in;
`payload_text` says why a payload cannot be stored (a NUL, a lone
surrogate, too deep), or gives its JSON text.
"""

import json
import math
import re
from typing import Any

MAX_PAYLOAD_DEPTH = 16


class UnfitNumber:
    """A JSON number that a float cannot hold, left in place by `loads` so
    that validation can name the field it is in."""

    __slots__ = ("problem", "text")

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem

    def __repr__(self) -> str:
        return f"UnfitNumber({self.text!r})"


NONZERO_MANTISSA = re.compile(r"-?[0.]*[1-9]")


def _checked_float(text: str) -> float | UnfitNumber:
    value = float(text)
    if not math.isfinite(value):
        return UnfitNumber(text, f"number {text} is out of range")
    # 1e-400 parses as 0.0: storing it would silently change the number.
    if value == 0.0 and NONZERO_MANTISSA.match(text):
        return UnfitNumber(text, f"number {text} is too small: it would be stored as 0")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """json.loads that refuses NaN/Infinity. A number a float cannot hold
    (1e400, 1e-400) becomes an UnfitNumber, which validation refuses by name."""
    return json.loads(text, parse_float=_checked_float, parse_constant=_reject_constant)


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store this text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    # str.isascii reads a flag of the string, no scan: most text is ASCII,
    # which holds no surrogate, and encoding it would only copy it.
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (a lone surrogate)"
    return None


def _walk_payload(value: Any, depth: int = 0) -> str | None:
    """Why a payload cannot be stored as JSONB, or None."""
    if depth > MAX_PAYLOAD_DEPTH:
        return f"is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key) or _walk_payload(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _walk_payload(item, depth + 1)
            if problem:
                return problem
    return None


def _depth_problem(value: Any, depth: int = 0) -> str | None:
    if depth > MAX_PAYLOAD_DEPTH:
        return f"is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, dict | list):
            problem = _depth_problem(item, depth + 1)
            if problem:
                return problem
    return None


def _unfit_number(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    """(field, problem) of the first UnfitNumber in a payload, or None."""
    if isinstance(value, UnfitNumber):
        return path, value.problem
    if depth > MAX_PAYLOAD_DEPTH:
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, UnfitNumber | dict | list):
            found = _unfit_number(item, f"{path}.{key}", depth + 1)
            if found:
                return found
    return None


def payload_text(payload: dict) -> tuple[tuple[str, str] | None, str]:
    """((field, why) the payload cannot be stored as JSONB, or None; its JSON text).

    The fast path serialises once and looks at the text: JSON spells a NUL
    as \\u0000 and a lone surrogate fails to encode. Only a payload that
    might have such a problem takes the exact (slower) walk, which names it.
    """
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if not text.isascii():
            text.encode("utf-8")  # a lone surrogate raises
    except TypeError:
        # An UnfitNumber from loads(), or an object a Python caller put there.
        problem = _depth_problem(payload) or "contains a value that JSON cannot hold"
        return _unfit_number(payload, "payload") or ("payload", problem), ""
    except (UnicodeEncodeError, RecursionError, ValueError):
        problem = _walk_payload(payload) or "contains NaN or Infinity, which JSON cannot hold"
        return ("payload", problem), ""
    if "\\u0000" in text:
        problem = _walk_payload(payload)
    elif text.count("{") + text.count("[") > MAX_PAYLOAD_DEPTH:
        # Nesting deeper than the limit takes more opening brackets than
        # that: only a payload with that many is walked.
        problem = _depth_problem(payload)
    else:
        problem = None
    return (("payload", problem) if problem else None), text
