"""Points in time on the command line (`--since 2h`, `--until 2025-11-24T16:30Z`) and on screen (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from floodgate.core.durations import format_duration, parse_duration

WHEN_HELP = "a duration ago (90s, 30m, 2h, 7d), an ISO 8601 time in UTC (2025-11-24T16:30Z), or now"


def parse_when(text: str, now: float) -> float:
    """Epoch seconds for `text`: a duration back from `now`, an ISO 8601 date or time, or "now".

    A time without a zone is UTC, like every time Floodgate prints. Raises ValueError naming the text.
    """
    cleaned = text.strip()
    if cleaned.lower() == "now":
        return now
    try:
        return now - parse_duration(cleaned)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(cleaned.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use {WHEN_HELP})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def clock(at: float) -> str:
    """2025-11-24 16:30:05Z"""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def expires_in(expires: float, now: float) -> str:
    """The time a ban has left (24m), or how long ago it ran out when the expirer is late (expired 3m ago)."""
    left = expires - now
    return format_duration(left) if left > 0 else f"expired {format_duration(-left)} ago"
