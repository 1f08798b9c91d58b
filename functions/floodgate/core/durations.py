"""Human durations ("90s", "30m", "2h", "7d", "1h30m") in and out."""

from __future__ import annotations

import re

from floodgate.core.text import shown

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
_LONGEST = 32  # "1w2d3h4m5s" and more; a longer text is not a duration someone typed


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "30m" or "1h30m". Every number needs its unit: a bare "5" could mean
    five seconds or five minutes, and a ban of the wrong one is worse than an error.

    Raises ValueError with the offending text for anything else, including zero.
    """
    cleaned = text.strip().lower()
    if len(cleaned) > _LONGEST:
        raise ValueError(f"not a duration: {shown(text)} (use e.g. 90s, 30m, 2h, 7d)")
    if cleaned.isascii() and cleaned.isdecimal():
        raise ValueError(
            f"duration {shown(text)} has no unit: write {cleaned}s, {cleaned}m, {cleaned}h or {cleaned}d"
        )
    if not (cleaned.isascii() and _WHOLE.fullmatch(cleaned)):
        raise ValueError(f"not a duration: {shown(text)} (use e.g. 90s, 30m, 2h, 7d)")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short readable form: 45s, 12m, 2h05m, 3d04h."""
    whole = round(seconds)
    if whole < 0:
        return "-" + format_duration(-whole)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m" + (f"{whole % 60:02d}s" if whole % 60 else "")
    if whole < 86400:
        return f"{whole // 3600}h" + (f"{whole % 3600 // 60:02d}m" if whole % 3600 >= 60 else "")
    return f"{whole // 86400}d" + (f"{whole % 86400 // 3600:02d}h" if whole % 86400 >= 3600 else "")
