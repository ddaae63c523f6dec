"""The one exception type that reaches the user as a single line (exit code 2)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: printed as one line, no traceback, exit code 2."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Returns ` (did you mean: a, b?)` for the closest choices, or a list of all choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return f" (did you mean: {', '.join(close)}?)"
    return f" (choices: {', '.join(choices)})"


def safe_name(value: object, field: str) -> str:
    """`value` as a file or folder name, or one UserError line naming `field`: names that
    become paths (sample ids, variant labels, method names of imported edits) stay inside the
    folder they are written to."""
    text = str(value)
    bad = (
        not text
        or len(text) > 200
        or text in (".", "..")
        or text.startswith(".")
        or any(c in text for c in "/\\")
        or any(ord(c) < 32 for c in text)
    )
    if bad:
        raise UserError(
            f"{field} {text!r} cannot be a file name (no '/', '\\', leading '.', control "
            "characters; at most 200 characters)"
        )
    return text
