"""Text from outside (events, payloads, the deny log) made safe to keep, compare and print."""

from __future__ import annotations

import unicodedata

# Unicode categories that are not text a person reads: controls (ANSI escapes start with ESC, newlines would
# forge log rows), formatting characters (bidirectional overrides reorder what a terminal shows), and
# surrogates (not encodable: DynamoDB and every JSON encoder with ensure_ascii=False refuse them).
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs"})


def shown(value: object, limit: int = 40) -> str:
    """A value as it may appear in an error message: its repr cut to `limit` characters, only the type of
    what cannot be short (huge numbers, structures), and ASCII throughout. Never raises."""
    if isinstance(value, str):
        text = repr(value[:limit]) + ("..." if len(value) > limit else "")
    elif isinstance(value, bool | float) or value is None:
        text = repr(value)
    elif isinstance(value, int):
        text = repr(value) if -(10**limit) < value < 10**limit else f"an integer of {value.bit_length()} bits"
    else:
        text = f"a {type(value).__name__}"
    return text.encode("ascii", "backslashreplace").decode("ascii")


def has_surrogates(text: str) -> bool:
    """True when `text` holds a lone surrogate (JSON "\\ud800" escapes decode to one): not valid Unicode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean(text: str) -> str:
    """`text` without control, formatting or surrogate characters; tabs and newlines become spaces."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(
        " " if ch in "\t\n\r" else ch
        for ch in text
        if ch in "\t\n\r" or unicodedata.category(ch) not in _UNPRINTABLE
    )


def printable(text: str) -> str:
    """`text` for a terminal: every unprintable character escaped (\\x1b, \\n), so stored text can neither
    move the cursor nor forge a line of output."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
