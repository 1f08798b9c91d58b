"""Flow-log lines into a TrafficSummary, with the vectorised scanner where numpy is installed and the
reference parser elsewhere: the same summaries either way (property tests check it), the first several
times faster per record.

Both `floodgate analyze` (blocks of a capture) and the detector (one subscription delivery) go through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from floodgate.core.flowlog import FlowLogParser, PendingBatch, SourceBatch, TimeBounds
from floodgate.core.summary import TrafficSummary

if TYPE_CHECKING:
    from floodgate.core.fastscan import FastScanner


class ReferenceScanner:
    """Blocks through the reference parser: what runs where numpy is not installed."""

    pending_sources = 0

    def __init__(self, parser: FlowLogParser) -> None:
        self.parser = parser

    def scan_into(self, block: bytes, pending: PendingBatch, bounds: TimeBounds | None = None) -> None:
        self.parser.accumulate(block.decode("utf-8", "replace").split("\n")[:-1], pending, bounds)

    def drain_into(
        self, pending: PendingBatch, summary: TrafficSummary, *, hold: bool = False
    ) -> SourceBatch:
        """`hold` is the vectorised scanner's leave to keep levels in arrays until the last drain: here
        everything is in `summary` at once."""
        del hold
        batch = self.parser.finish(pending)
        summary.add(batch)
        return batch


def block_scanner(parser: FlowLogParser) -> ReferenceScanner | FastScanner:
    """The vectorised scanner when numpy is installed, else the reference parser (same answers)."""
    try:
        from floodgate.core.fastscan import FastScanner  # noqa: PLC0415 - numpy is optional
    except ImportError:
        return ReferenceScanner(parser)
    return FastScanner(parser)


def summarise_lines(
    scanner: ReferenceScanner | FastScanner,
    lines: Sequence[str],
    summary: TrafficSummary,
    bounds: TimeBounds | None = None,
) -> SourceBatch:
    """Add one batch of lines (one subscription delivery) to `summary`, as
    `summary.add(scanner.parser.parse(lines, bounds))` would. Returns the batch for its statistics and
    dependencies; its sources are in `summary` (the vectorised scanner folds them in without a batch entry).

    The scanner reads bytes with one line per newline: a batch whose lines hold a newline themselves, or
    that UTF-8 cannot encode (a lone surrogate from JSON), goes through the reference parser line by line.
    """
    text = "\n".join(lines)
    block = None
    if not isinstance(scanner, ReferenceScanner) and text.count("\n") == len(lines) - 1:
        try:
            block = (text + "\n").encode()
        except UnicodeEncodeError:
            block = None
    if block is None:
        batch = scanner.parser.parse(lines, bounds)
        summary.add(batch)
        return batch
    pending = PendingBatch()
    scanner.scan_into(block, pending, bounds)
    return scanner.drain_into(pending, summary)
