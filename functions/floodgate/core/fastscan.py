"""Vectorised flow-log scanning with numpy: the same answers as FlowLogParser, several times faster.

The reference parser splits every line into Python strings, and creating those objects is what costs. Here
a whole block of regular lines is read as one byte array: field boundaries come from the positions of the
separators, counters are parsed as digit matrices, and IPv4 addresses that are strict dotted quads become
their integer values at once. Per-source sums live in one table sorted by address, so that the /24 and /16
sums of a drain are read off its boundaries, and no Python object is made per distinct source. Whatever is
not plainly regular — IPv6, NODATA, non-ASCII, odd whitespace, an address inet_pton would refuse, any value
the reference would question — is handed to the reference parser line by line, so that counts, reasons and
tallies are identical (property tests check it). numpy is optional: without it, callers use the reference.

Where `pip install` could compile it, the C extension `_blockscan` scans each block instead
(`_scan_compiled`): one pass line by line with the same checks, handing back the same leftovers, and the
plain inbound rows as packed columns for the same per-source sums. The numpy scan below stays: for machines
without a compiler, and as the compiled scanner's second witness in the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress
from operator import not_
from typing import Any

import numpy as np

from floodgate.core.flowlog import (
    BYTES,
    EPHEMERAL_PORT_FLOOR,
    MAX_BYTES,
    MAX_PACKETS,
    MIN_BYTES_PER_PACKET,
    NOT_INBOUND,
    PACKETS,
    RECORDS,
    REJECT_PACKETS,
    SPOOFABLE,
    SYN,
    FlowLogParser,
    PendingBatch,
    SourceBatch,
    Tally,
    TimeBounds,
)
from floodgate.core.summary import Counter, LevelSummary, TrafficSummary

try:
    from floodgate.core import _blockscan  # type: ignore[attr-defined]  # built by `pip install` where gcc is
except ImportError:  # no compiler at install time: the numpy path below does the same work
    _blockscan = None

NDArray = Any  # numpy arrays; the stubs add nothing but noise here

_ADDRESS_WIDTH = 15  # "255.255.255.255"
_PAD = 16  # widest field read at once
# Address characters become nibbles (byte - 44): "-" 1, "." 2, "0".."9" 4..13; padding is "," (0).
_NIBBLE_BASE = 44


def _word(text: bytes) -> int:
    return int(np.frombuffer(text.ljust(8, b"\0"), dtype=np.uint64)[0])


class _Token:
    """A field's whole text (at most 7 bytes), as compared by `_Block.equals`: the word `_Block.word` reads
    for the line's first field, and for any other the 8 bytes that end where the field ends, the separating
    space before it included (so that a longer field ending the same way does not match)."""

    __slots__ = ("mask", "tail", "word")

    def __init__(self, text: bytes) -> None:
        spaced = b" " + text
        self.word = _word(text)
        self.tail = np.uint64(_word(spaced.rjust(8, b"\0")))
        self.mask = np.uint64(((1 << 8 * len(spaced)) - 1) << 8 * (8 - len(spaced)))


_OK, _ACCEPT, _REJECT = _Token(b"OK"), _Token(b"ACCEPT"), _Token(b"REJECT")
_INGRESS, _EGRESS, _DASH = _Token(b"ingress"), _Token(b"egress"), _Token(b"-")
_IPV4, _IPV6 = _Token(b"IPv4"), _Token(b"IPv6")
_ICMP, _TCP, _UDP, _ICMPV6 = _Token(b"1"), _Token(b"6"), _Token(b"17"), _Token(b"58")


def _lanes(byte: int) -> np.uint64:
    """`byte` repeated in all eight byte lanes of a 64-bit word."""
    return np.uint64(0x0101010101010101 * byte)


_HIGH_BITS = _lanes(0x80)
# Byte masks by field width: MASKS[w] keeps the first w of 16 bytes, as (low word, high word).
_MASKS = np.array(
    [[(1 << 8 * min(w, 8)) - 1, (1 << 8 * max(0, min(w, 16) - 8)) - 1] for w in range(17)], dtype=np.uint64
)


# Right-aligned numbers: FIELD[w] keeps the last w of 16 bytes; ZERO_FILL[w] puts "0" in the bytes before.
_FIELD = ~_MASKS[16 - np.arange(17)]
_ZERO_FILL = _MASKS[16 - np.arange(17)] & _lanes(48)
_HIGH_NIBBLES = _lanes(0xF0)


# The same for a field read as one word: FIELD_8[w] keeps the last w of 8 bytes.
_FIELD_8 = ~_MASKS[8 - np.arange(9), 0]
_ZERO_FILL_8 = _MASKS[8 - np.arange(9), 0] & _lanes(48)


def _digit_words(words: NDArray) -> NDArray:
    """Per word: is every byte an ASCII digit? (high nibble 3 before and after adding 6)"""
    return ((words & _HIGH_NIBBLES) == _lanes(0x30)) & (((words + _lanes(6)) & _HIGH_NIBBLES) == _lanes(0x30))


def _all_digits(words: NDArray) -> NDArray:
    """Per row of two words: is every byte an ASCII digit?"""
    valid = _digit_words(words)
    return valid[:, 0] & valid[:, 1]


def _candidate_lines(buf: np.ndarray, nf: int) -> np.ndarray:
    """Per line of a block that ends with a newline: could it be regular (nf - 1 spaces, ASCII only)? The
    lines that could are scanned again as a block of their own, the others go to the reference parser."""
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))  # each line's segment ends with its newline: never empty
    spaces = np.add.reduceat(buf == 32, starts, dtype=np.intp)
    high = np.add.reduceat(buf >= 128, starts, dtype=np.intp)
    return (spaces == nf - 1) & (high == 0)  # type: ignore[no-any-return]


def _eight_digits(digits: NDArray) -> NDArray:
    """The value of words of eight digit values (0..9), first digit in the lowest byte: pairs, quads, then
    all eight."""
    digits = (digits * np.uint64(10) + (digits >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    digits = (digits * np.uint64(100) + (digits >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return (digits * np.uint64(10000) + (digits >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


def _rows(table: NDArray, index: NDArray) -> NDArray:
    """table[index] for a small table: np.take is an order of magnitude faster than fancy indexing here."""
    return np.take(table, index, axis=0)


def _any_byte_below(words: NDArray, limit: int) -> NDArray:
    """Per word: does any byte lie below `limit`? (SWAR; valid for bytes < 128)."""
    return ((words - _lanes(limit)) & ~words & _HIGH_BITS) != 0


def _any_byte_above(words: NDArray, limit: int) -> NDArray:
    """Per word: does any byte lie above `limit`? (SWAR; valid for bytes < 128)."""
    return (((words + _lanes(127 - limit)) | words) & _HIGH_BITS) != 0


def _any_byte_equal(words: NDArray, byte: int) -> NDArray:
    return _any_byte_below(words ^ _lanes(byte), 1)


class _Block:
    """Field geometry of a block in which every line has exactly nf non-empty, single-space-separated fields.

    Fields are read through a sliding-window view of the (zero-padded) buffer: indexing it by field position
    copies the 16 bytes around each field, which are then worked on as two 64-bit words per field (SWAR:
    eight byte lanes per operation), never character by character. Every byte is ASCII (checked by caller).
    """

    def __init__(self, buf: NDArray, ends: NDArray, line_ends: NDArray, room: NDArray) -> None:
        """`room`: a scratch buffer of at least len(buf) + 2 * _PAD bytes, reused from block to block (a
        fresh one would cost its page faults every time)."""
        padded = room[: len(buf) + 2 * _PAD]
        padded[:_PAD] = 0
        padded[_PAD:-_PAD] = buf
        padded[-_PAD:] = 0
        # The 16 bytes from any offset as one (unaligned) 16-byte item: indexing by field position copies
        # them with one memcpy each, far faster than a two-dimensional sliding-window gather.
        self.sixteen_at = np.ndarray((len(padded) - 15,), dtype="V16", buffer=padded, strides=(1,))
        # The 8 bytes from any offset as one (unaligned) 8-byte item, for short fields: gathered as raw bytes
        # (a memcpy each) and only then read as uint64, ~40% faster than gathering unaligned uint64 items.
        self.eight_at = np.ndarray((len(padded) - 7,), dtype="V8", buffer=padded, strides=(1,))
        self.ends, self.line_ends = ends, line_ends
        self.line_starts = np.empty(len(ends), dtype=ends.dtype)
        self.line_starts[0] = 0
        self.line_starts[1:] = line_ends[:-1] + 1
        self._ends: dict[int, NDArray] = {len(ends[0]) - 1: line_ends}
        self._starts: dict[int, NDArray] = {}
        self._widths: dict[int, NDArray] = {}
        self._tails: dict[int, NDArray] = {}

    def end(self, col: int) -> NDArray:
        """Where each line's field ends (its separator), as a contiguous copy: a column of `ends` is read
        once per block, its rows lying too far apart for the caches."""
        ends = self._ends.get(col)
        if ends is None:
            ends = self._ends[col] = self.ends[:, col].copy()
        return ends

    def start(self, col: int) -> NDArray:
        starts = self._starts.get(col)
        if starts is None:
            starts = self._starts[col] = self.line_starts if col == 0 else self.end(col - 1) + 1
        return starts

    def width(self, col: int) -> NDArray:
        widths = self._widths.get(col)
        if widths is None:
            widths = self._widths[col] = self.end(col) - self.start(col)
        return widths

    def tail(self, col: int) -> NDArray:
        """The 8 bytes that end where each field ends, as one uint64 (the field's last byte highest)."""
        tail = self._tails.get(col)
        if tail is None:
            tail = self._tails[col] = self.eight_at[self.end(col) + (_PAD - 8)].view(np.uint64)
        return tail

    def equals(self, col: int, token: _Token) -> NDArray:
        """Per line: is the field exactly `token`? Fields after the first follow a single space (the block
        is regular), which the comparison includes; the first follows a newline or the block's start."""
        if col == 0:
            return self.word(col) == token.word
        return (self.tail(col) & token.mask) == token.tail

    def no_empty_fields(self, separators: NDArray) -> bool:
        """False when two separators touch or a line starts with one (an empty field, which the reference
        parser does not see)."""
        return bool(separators[0] > 0 and (np.diff(separators) > 1).all())

    def _words(self, col: int, *, right_aligned: bool = False) -> tuple[NDArray, NDArray]:
        """(words, widths): the 16 bytes from the field's start (or ending at its end) as two uint64."""
        first = self.end(col) - _PAD if right_aligned else self.start(col)
        return self.sixteen_at[first + _PAD].view(np.uint64).reshape(-1, 2), self.width(col)

    def number(self, col: int, width: int) -> tuple[NDArray, NDArray]:
        """(value, ok) of an unsigned decimal field of at most `width` (≤ 16) digits."""
        widths = self.width(col)
        if width > 8 and int(widths.max()) > 8:
            words, _ = self._words(col, right_aligned=True)
            clipped = np.minimum(widths, 16)
            digits = words & _rows(_FIELD, clipped)
            digits |= _rows(_ZERO_FILL, clipped)
            ok = (widths <= width) & _all_digits(digits)
            digits = _eight_digits(digits - _lanes(48))
            return (digits[:, 0] * np.uint64(100_000_000) + digits[:, 1]).view(np.int64), ok
        # No field of the block is longer than a word (or longer ones fail `width` anyway): half the work.
        clipped = np.minimum(widths, 8)
        digits = (self.tail(col) & np.take(_FIELD_8, clipped)) | np.take(_ZERO_FILL_8, clipped)
        ok = (widths <= width) & _digit_words(digits)
        return _eight_digits(digits - _lanes(48)).view(np.int64), ok

    def word(self, col: int) -> NDArray:
        """Fields of up to 8 bytes as one uint64 each (longer fields never match a known word)."""
        widths = self.width(col)
        words = self.eight_at[self.start(col) + _PAD].view(np.uint64)
        return np.where(widths <= 8, words & np.take(_MASKS[:, 0], np.minimum(widths, 8)), 0)

    def address(self, col: int) -> tuple[NDArray, NDArray, NDArray]:
        """(text, keep, widths): each field's first 16 bytes as two uint64 with the bytes past its end zeroed
        (so equal texts are equal pairs of words), the mask that did it, and the field widths."""
        words, widths = self._words(col)
        keep = _rows(_MASKS, np.minimum(widths, 16))
        return words & keep, keep, widths

    def ipv4(self, col: int, known: _KnownTexts | None = None) -> tuple[NDArray, NDArray]:
        """(value, ok): fields that are strict dotted quads, as integers; ok is False for anything else
        ("-", IPv6, leading zeros, ...), which the caller leaves to the reference parser. Through `known`,
        the column's cache of texts, when given."""
        text, keep, widths = self.address(col)
        if known is None:
            return _ipv4(text, keep, widths)
        return known.values(text[:, 0], text[:, 1], lambda rows: _ipv4(text[rows], keep[rows], widths[rows]))


def _ipv4(field: NDArray, keep: NDArray, widths: NDArray) -> tuple[NDArray, NDArray]:
    """(value, ok) of address texts as `_Block.address` gives them.

    Each byte becomes a nibble (byte - 44: "." 2, digits 4..13, padding 0) in its own lane; three rounds
    of shift-and-mask pack the eight lanes of each word into 32 bits, and `_dotted_quads` reads the key.
    """
    checked = field | (_lanes(48) & ~keep)  # padding as "0": only digits and dots may remain
    bad = _any_byte_below(checked, 46) | _any_byte_above(checked, 57) | _any_byte_equal(checked, 47)
    ok = ~(bad[:, 0] | bad[:, 1]) & (widths <= _ADDRESS_WIDTH)
    words = (field - (_lanes(_NIBBLE_BASE) & keep)) & _lanes(15)
    words = (words | (words >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    words = (words | (words >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    words = (words | (words >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
    value, strict = _dotted_quads(words[:, 0] | (words[:, 1] << np.uint64(32)))
    return value, ok & strict


class _KnownTexts:
    """Texts of one column seen before, with their values: a small direct-mapped cache, so that a text
    that comes back is looked up instead of parsed again. The scanner keeps one for the destinations: the
    VPC's own interfaces are those of nearly every inbound record (the reference parser keeps a cache of
    them too), and a lookup costs about a tenth of parsing the address. Sources, counters and times were
    measured through one too and gained nothing: their texts vary more, so a lookup misses the CPU's caches
    or parsing is already as cheap as looking up.

    Exact: a text is two words that equal texts and only those share, and a slot holds both beside the
    value, written as one 24-byte item; a lookup compares the text itself, the hash only picks the slot.
    Only texts that parsed well are kept, and a text that lost its slot to another is simply parsed again.
    A column whose texts rarely repeat (a spoofed flood's destinations) makes the lookups pause for 1, 2, 4,
    ... blocks (texts are still written), so that it costs little there.
    """

    SLOT_BITS = 12  # 4,096 slots of 24 bytes (96 KB): at home in the CPU's second-level cache
    MAX_PAUSE = 64  # blocks

    def __init__(self) -> None:
        self._slots = np.zeros((1 << self.SLOT_BITS, 3), dtype=np.uint64)  # text words, value
        self._shift = np.uint64(64 - self.SLOT_BITS)
        self._paused = 0  # blocks left without lookups
        self._pause = 1  # the next pause, doubled after each block in which fewer than a quarter were found
        self._warm = False  # has a block been written here yet (the first one finds nothing, as it must)?

    def values(
        self, first: NDArray, second: NDArray, parse: Callable[[NDArray | slice], tuple[NDArray, NDArray]]
    ) -> tuple[NDArray, NDArray]:
        """(value, ok) of the texts (`first`, `second`) as `parse` of their row numbers gives them."""
        slot = ((((second * _MIX_SECOND) ^ first) * _MIX) >> self._shift).astype(np.intp)
        if self._paused:
            self._paused -= 1
            value, ok = parse(slice(None))
            self._remember(slot, first, second, value, ok)
            return value, ok
        held = np.take(self._slots.view("V24")[:, 0], slot).view(np.uint64).reshape(-1, 3)
        found = (held[:, 0] == first) & (held[:, 1] == second)
        value = held[:, 2].view(np.int64)
        missed = np.flatnonzero(~found)
        if not self._warm:
            self._warm = True
        elif len(missed) * 4 > len(found) * 3:
            self._paused, self._pause = self._pause, min(2 * self._pause, self.MAX_PAUSE)
        else:
            self._pause = 1
        if len(missed):
            parsed, ok = parse(missed)
            value[missed] = parsed
            found[missed] = ok
            self._remember(slot[missed], first[missed], second[missed], parsed, ok)
        return value, found

    def _remember(self, slot: NDArray, first: NDArray, second: NDArray, value: NDArray, ok: NDArray) -> None:
        """Write the texts that parsed well into their slots, whatever was there."""
        rows = np.empty((int(np.count_nonzero(ok)), 3), dtype=np.uint64)
        rows[:, 0] = first[ok]
        rows[:, 1] = second[ok]
        rows[:, 2] = value[ok]
        # One 24-byte item per slot: when several texts share a slot, one whole row wins.
        self._slots.view("V24")[slot[ok], 0] = rows.view("V24")[:, 0]


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constants whose products spread a text's bits to the top
_MIX_SECOND = np.uint64(0xC2B2AE3D27D4EB4F)


def _octet_table() -> NDArray:
    """Octet value of every nibble triple (first character in the lowest nibble, padding 0), -1 for any
    that is not a decimal from 0 to 255 written as inet_pton reads it (no leading zero, no sign)."""
    table = np.full(1 << 12, -1, dtype=np.int64)
    for value in range(256):
        table[sum((byte - _NIBBLE_BASE) << 4 * i for i, byte in enumerate(str(value).encode()))] = value
    return table


_OCTETS = _octet_table()
_NIBBLES_15 = np.int64((1 << 60) - 1)
_LOW_NIBBLE_BITS = np.int64(0x0777777777777777)
_HIGH_NIBBLE_BITS = np.int64(0x0888888888888888)
_DOT_NIBBLES = np.int64(0x0222222222222222)  # "." is nibble 2, in each of the 15 character positions


def _lowest_bit_index(words: NDArray) -> NDArray:
    """Index of each int64 word's lowest set bit (negative for 0): a power of two converts to float64
    exactly, and its exponent field is the index. (From int64, not uint64: a conversion the CPU has.)"""
    return ((words & -words).astype(np.float64).view(np.int64) >> 52) - 1023


def _dotted_quads(keys: NDArray) -> tuple[NDArray, NDArray]:
    """(value, ok) of address keys read as strict dotted quads (as inet_pton reads them: no leading zeros).

    The three dots are found as the zero nibbles of key ^ "...": each octet is then the nibbles below the
    next dot, at most three of them, read through a 4096-entry table. No loop over characters. Keys have 60
    bits, so everything is done in int64 (numpy's uint64 conversions and indexing are slower).
    """
    rest = keys.view(np.int64) & _NIBBLES_15
    found = rest ^ _DOT_NIBBLES  # dots become zero nibbles
    dots = ~(((found & _LOW_NIBBLE_BITS) + _LOW_NIBBLE_BITS) | found | _LOW_NIBBLE_BITS) & _HIGH_NIBBLE_BITS
    value = np.zeros(len(keys), dtype=np.int64)
    ok = np.ones(len(keys), dtype=bool)
    for _ in range(3):
        at = _lowest_bit_index(dots)  # bit 3 of the dot's nibble, negative when there is none
        # The octet's nibbles lie below the dot's: at most three (a dot further on fails `at <= 15`); none
        # when the dot comes first or is missing (table entry 0, which is no octet).
        octet = np.take(_OCTETS, rest & ((1 << np.clip(at - 3, 0, 12)) - 1))
        ok &= (octet >= 0) & (at <= 15)
        value = (value << 8) | octet
        shift = np.maximum(at + 1, 0)
        rest >>= shift
        dots >>= shift
    ok &= dots == 0
    octet = np.take(_OCTETS, np.minimum(rest, 4095))
    ok &= octet >= 0
    return (value << 8) | octet, ok


class FastScanner:
    """Scans bytes blocks (whole lines, ending in a newline) into SourceBatches, like `parser.parse` would."""

    def __init__(self, parser: FlowLogParser, *, compiled: bool = True) -> None:
        """`compiled`: scan blocks with the C extension `_blockscan` when it was built (False: numpy only,
        the path the property tests hold it against)."""
        self.parser = parser
        fmt = parser.format
        self.nf = len(fmt.fields)
        ix = fmt.index
        self.src, self.pkt_src = ix("srcaddr"), ix("pkt-srcaddr")
        self.dst = ix("dstaddr") if ix("dstaddr") is not None else ix("pkt-dstaddr")
        self.packets, self.bytes = ix("packets"), ix("bytes")
        self.start, self.end = ix("start"), ix("end")
        self.action, self.status = ix("action"), ix("log-status")
        self.direction, self.type, self.tcp_flags = ix("flow-direction"), ix("type"), ix("tcp-flags")
        self.protocol, self.aws_service = ix("protocol"), ix("pkt-src-aws-service")
        self.src_port, self.dst_port = ix("srcport"), ix("dstport")
        self._sums = _SourceSums()
        self._bounds: TimeBounds | None = None  # of the block being scanned
        self._inside_v4 = parser.inside_ranges(4)
        self._room = np.empty(0, dtype=np.uint8)  # the padded copy of the block being scanned
        self._held: _HeldLevels | None = None  # IPv4 levels kept in arrays between drains (`hold`)
        self._destinations = _KnownTexts()
        # The compiled scanner's view of the format: each role's field position, -1 when absent.
        roles = [
            self.src,
            self.pkt_src,
            self.dst,
            self.packets,
            self.bytes,
            self.start,
            self.end,
            self.action,
        ]
        roles += [self.status, self.direction, self.type, self.tcp_flags, self.protocol, self.aws_service]
        roles += [self.src_port, self.dst_port]
        self._positions = tuple(-1 if index is None else index for index in roles)
        self.compiled = compiled and _blockscan is not None

    def scan(self, data: bytes, bounds: TimeBounds | None = None) -> SourceBatch:
        pending = PendingBatch()
        self.scan_into(data, pending, bounds)
        self.drain(pending)
        return self.parser.finish(pending)

    def scan_into(self, data: bytes, pending: PendingBatch, bounds: TimeBounds | None = None) -> None:
        """Add a block's traffic to `pending` (several blocks may share one, to validate sources once).
        With `bounds`, records outside them are skipped by reason, as `FlowLogParser.parse` does."""
        if data and not data.endswith(b"\n"):
            data += b"\n"
        self._bounds = bounds
        if self.compiled:
            leftovers = self._scan_compiled(data, pending.batch)
        else:
            leftovers = self._scan_block(data, pending.by_text, pending.batch)
        if leftovers:
            self.parser.accumulate(leftovers, pending, bounds)

    def _scan_compiled(self, data: bytes, batch: SourceBatch) -> list[bytes]:
        """`_scan_block` in C, one pass line by line: the same rows kept, counted and handed back."""
        bounds = None if self._bounds is None else (self._bounds.oldest_end, self._bounds.newest_start)
        src, packets, octets, rejected, spoofable, rows, not_inbound, first, last, leftovers = (
            _blockscan.scan(data, self.nf, self._positions, bounds, self._inside_v4)
        )
        if not_inbound:
            batch.stats.skip(NOT_INBOUND, not_inbound)
        if rows:
            self._sums.add(
                np.frombuffer(src, dtype=np.int64, count=rows),
                np.frombuffer(packets, dtype=np.int64, count=rows),
                np.frombuffer(octets, dtype=np.int64, count=rows),
                np.frombuffer(rejected, dtype=np.bool_, count=rows),
                np.frombuffer(spoofable, dtype=np.bool_, count=rows),
            )
        if first is not None:
            batch.cover(first, last)
        return leftovers  # type: ignore[no-any-return]

    def _scan_block(self, data: bytes, by_text: dict[str, Tally], batch: SourceBatch) -> list[bytes]:
        """Scan what is regular; return the lines the reference parser must see."""
        buf = np.frombuffer(data, dtype=np.uint8)
        seps = np.flatnonzero(buf <= 32)
        nf = self.nf
        if len(seps) % nf == 0 and len(seps):
            ends = seps.reshape(-1, nf)
            line_ends = ends[:, -1].copy()
            # Regular: ASCII only, the one control byte is the newline, and it ends each row of nf fields.
            regular = (
                buf.max() < 128
                and np.count_nonzero(buf < 32) == len(ends)
                and bool((buf[line_ends] == 10).all())
            )
            if regular:
                if len(self._room) < len(buf) + 2 * _PAD:
                    self._room = np.empty(len(buf) + len(buf) // 8 + 2 * _PAD, dtype=np.uint8)
                block = _Block(buf, ends, line_ends, self._room)
                if block.no_empty_fields(seps):
                    return self._scan_regular(block, data, by_text, batch)
        # Mixed block: route lines that cannot be regular to the reference, scan the rest in one go.
        lines = data.split(b"\n")[:-1]
        candidates = _candidate_lines(buf, nf).tolist()
        plain = list(compress(lines, candidates))
        if len(plain) == len(lines):
            return lines  # the structure is odd in a way a count cannot see: let the reference judge
        odd = list(compress(lines, map(not_, candidates)))
        if plain:
            odd += self._scan_block(b"\n".join(plain) + b"\n", by_text, batch)
        return odd

    def _scan_regular(  # noqa: PLR0912, PLR0915 - one vector test per optional field, in the reference's order
        self, block: _Block, data: bytes, by_text: dict[str, Tally], batch: SourceBatch
    ) -> list[bytes]:
        n = block.ends.shape[0]
        good = np.ones(n, dtype=bool)
        packets, ok = block.number(self.packets, 12)  # type: ignore[arg-type]
        good &= ok & (packets <= MAX_PACKETS)
        octets, ok = block.number(self.bytes, 15)  # type: ignore[arg-type]
        good &= ok & (octets <= MAX_BYTES) & (octets >= MIN_BYTES_PER_PACKET * packets)
        if self.start is not None and self.end is not None:
            start, ok_start = block.number(self.start, 10)
            end, ok_end = block.number(self.end, 10)
            good &= ok_start & ok_end & (end >= start)
            if self._bounds is not None:  # the reference names TOO_OLD and FUTURE
                good &= (end >= self._bounds.oldest_end) & (start <= self._bounds.newest_start)
        if self.status is not None:
            good &= block.equals(self.status, _OK)
        rejected = np.zeros(n, dtype=bool)
        if self.action is not None:
            rejected = block.equals(self.action, _REJECT)
            good &= block.equals(self.action, _ACCEPT) | rejected
        if self.type is not None:
            kind = self.type
            good &= block.equals(kind, _IPV4) | block.equals(kind, _IPV6) | block.equals(kind, _DASH)
        flags = None
        if self.tcp_flags is not None:
            flags, ok = block.number(self.tcp_flags, 3)
            good &= (ok & (flags < 512)) | block.equals(self.tcp_flags, _DASH)
            flags = np.where(ok, flags, -1)
        spoofable = np.zeros(n, dtype=bool)
        if self.protocol is not None:
            # Protocol numbers as text (one gather), compared with the few that matter.
            protocol = self.protocol
            spoofable = (
                block.equals(protocol, _ICMP) | block.equals(protocol, _UDP) | block.equals(protocol, _ICMPV6)
            )
            if flags is not None:
                spoofable |= block.equals(protocol, _TCP) & (flags == SYN)
        if self.aws_service is not None:
            good &= block.equals(self.aws_service, _DASH)  # the reference names the service records' reason
        if self.src is not None:
            src, ok = block.ipv4(self.src)
        if self.pkt_src is not None:
            pkt_src, pkt_ok = block.ipv4(self.pkt_src)
            if self.src is None:
                src, ok = pkt_src, pkt_ok
            else:
                behind = ~block.equals(self.pkt_src, _DASH)  # the original client, when there is one
                src, ok = np.where(behind, pkt_src, src), np.where(behind, pkt_ok, ok)
        good &= ok  # "-", IPv6 or an odd spelling: the reference parser judges the line
        inbound = np.ones(n, dtype=bool)
        check_dst = np.ones(n, dtype=bool)
        if self.direction is not None:
            direction = self.direction
            egress = block.equals(direction, _EGRESS)
            check_dst = block.equals(direction, _DASH)
            good &= block.equals(direction, _INGRESS) | egress | check_dst
            inbound &= ~egress
        if self.dst is not None and check_dst.any():
            dst, ok = block.ipv4(self.dst, self._destinations)
            good &= ~check_dst | ok
            inbound &= ~check_dst | _inside_mask(dst, self._inside_v4)
        elif self.dst is None and self.direction is not None:
            good &= ~check_dst  # no destination field: a "-" direction cannot be told apart
        outbound = good & ~inbound
        if outbound.any():
            # Connections the VPC may have opened name its dependencies: the reference parser notes those.
            opened = outbound & self._maybe_opened(block, flags, rejected)
            good &= ~opened
            batch.stats.skip(NOT_INBOUND, int((outbound & ~opened).sum()))
        use = good & inbound
        if use.any():
            self._sums.add(src[use], packets[use], octets[use], rejected[use], spoofable[use])
            if self.start is not None and self.end is not None:
                batch.cover(int(start[use].min()), int(end[use].max()))
        line_starts, line_ends = block.line_starts, block.line_ends
        return [data[line_starts[i] : line_ends[i]] for i in np.flatnonzero(~good).tolist()]

    def _maybe_opened(self, block: _Block, flags: NDArray | None, rejected: NDArray) -> NDArray:
        """Rows `FlowLogParser.opened_by_vpc` might accept (a superset: the reference decides)."""
        n = len(rejected)
        if self.src_port is None or self.dst_port is None:
            by_ports = np.zeros(n, dtype=bool)
        else:
            src_port, ok_src = block.number(self.src_port, 5)
            dst_port, ok_dst = block.number(self.dst_port, 5)
            by_ports = ok_src & ok_dst & (src_port >= EPHEMERAL_PORT_FLOOR) & (dst_port < src_port)
            # Zero-padded beyond five digits is still a port to the reference's int(): let it decide.
            by_ports |= (block.width(self.src_port) > 5) | (block.width(self.dst_port) > 5)
        if flags is None:
            return ~rejected & by_ports
        return ~rejected & (by_ports | ((flags >= 0) & ((flags & SYN) != 0)))

    @property
    def pending_sources(self) -> int:
        """Distinct sources held in arrays, not yet drained (an upper bound)."""
        return self._sums.size

    def drain_into(
        self, pending: PendingBatch, summary: TrafficSummary, *, hold: bool = False
    ) -> SourceBatch:
        """Fold everything gathered so far into `summary`, then start afresh: what
        `summary.add(parser.finish(pending))` would do with every line through the reference parser.

        Sources held in arrays (strict dotted quads, sorted by value) go straight into the summary's IPv4
        levels, keeping only the counters that can survive compaction: no Python object per distinct
        source. IPv4 sources of the lines the reference parser took join them first, so that each level
        takes one merge per batch, as it would from the reference parser.

        With `hold`, the IPv4 levels stay in arrays here, merged batch by batch exactly as LevelSummary
        would, and reach `summary.levels` at the first drain without `hold` (a capture drained many times
        then builds its Python counters once, not once per drain). Everything else is in `summary` at once.
        """
        table = self._take_outside(pending.batch)
        batch = self.parser.finish(pending)
        if table is not None or self._held is not None:
            taken = [(key, batch.sources.pop(key)) for key in [key for key in batch.sources if key[0] == 4]]
            if taken:
                values = np.array([value for (_, value), _ in taken], dtype=np.int64)
                tallies = np.array([tally for _, tally in taken], dtype=object)
                octets = tallies[:, BYTES]
                columns = [tallies[:, PACKETS], octets >> 32, octets & 0xFFFFFFFF]
                columns += [tallies[:, REJECT_PACKETS], tallies[:, RECORDS], tallies[:, SPOOFABLE]]
                theirs = [column.astype(np.int64) for column in columns]
                if table is not None:
                    values = np.concatenate([table.values, values])
                    theirs = [np.concatenate(pair) for pair in zip(table.columns, theirs, strict=True)]
                table = _Table.grouped(values, theirs)
        if table is not None:
            if self._held is not None and self._held.summary is not summary:
                self._held.publish()
                self._held = None
            held = self._held or _HeldLevels.of(summary)
            if held is not None and held.fold(table):
                self._held = held
            else:  # beyond exact int64/float64 arithmetic: the levels' own merge, on Python integers
                if self._held is not None:
                    self._held.publish()
                    self._held = None
                _fold_into_levels(summary, table)
        if self._held is not None and not hold:
            self._held.publish()
            self._held = None
        summary.add(batch)
        return batch

    def drain(self, pending: PendingBatch) -> None:
        """Move the sums held in arrays into `pending.batch` (one Python object per source)."""
        table = self._take_outside(pending.batch)
        if table is None:
            return
        sources = pending.batch.sources
        columns = (column.tolist() for column in table.columns)
        rows = zip(table.values.tolist(), *columns, strict=True)
        for value, packets, high, low, rejected, records, spoofable in rows:
            sources[(4, value)] = [packets, (high << 32) + low, rejected, records, spoofable]

    def _take_outside(self, batch: SourceBatch) -> _Table | None:
        """The sums gathered so far, less sources inside the protected network (counted as not inbound)."""
        table = self._sums.take()
        if table is None:
            return None
        inside = _inside_mask(table.values, self._inside_v4)
        stats = batch.stats
        if inside.any():
            stats.skip(NOT_INBOUND, int(table.records[inside].sum()))
            table = table.select(~inside)
        stats.parsed += int(table.records.sum())
        return table if len(table.values) else None


class _Table:
    """Per-source sums, one row per distinct IPv4 source, sorted by address value. Bytes are summed as
    32-bit halves so that no int64 sum can overflow, whatever the input."""

    __slots__ = ("bytes_high", "bytes_low", "packets", "records", "rejected", "spoofable", "values")

    def __init__(self, values: NDArray, columns: list[NDArray]) -> None:
        self.values = values
        self.packets, self.bytes_high, self.bytes_low, self.rejected, self.records, self.spoofable = columns

    @property
    def columns(self) -> list[NDArray]:
        return [self.packets, self.bytes_high, self.bytes_low, self.rejected, self.records, self.spoofable]

    def select(self, rows: NDArray) -> _Table:
        return _Table(self.values[rows], [column[rows] for column in self.columns])

    @classmethod
    def grouped(cls, values: NDArray, columns: list[NDArray], *, runs: bool = False) -> _Table:
        """Rows with equal values summed; rows come out sorted by value. `runs`: the rows are a few sorted
        runs one after the other (a stable sort merges those in linear time)."""
        if not len(values):
            return cls(values, columns)
        # Sorting value and row number packed in one uint64 is several times faster than an argsort.
        rows = np.arange(len(values), dtype=np.uint64)
        packed = np.sort((values.astype(np.uint64) << np.uint64(32)) | rows, kind="stable" if runs else None)
        order = (packed & np.uint64(0xFFFFFFFF)).astype(np.intp)
        ordered = values[order]
        repeats = ordered[1:] == ordered[:-1]
        if not repeats.any():
            return cls(ordered, [column[order] for column in columns])
        firsts = np.flatnonzero(np.concatenate(([True], ~repeats)))
        return cls(ordered[firsts], [np.add.reduceat(column[order], firsts) for column in columns])


_COLUMNS = 6  # of a _Table


class _SourceSums:
    """Per-source sums [packets, bytes high, bytes low, rejected packets, records, spoofable packets] kept
    as arrays.

    The table is kept sorted by address: a block's sources that are already known are added in place
    (binary search); new ones wait in a small side list and are merged in once it grows, so most blocks
    sort only themselves.
    """

    MERGE_ROWS = 16_384

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.table = _Table(
            np.empty(0, dtype=np.int64), [np.empty(0, dtype=np.int64) for _ in range(_COLUMNS)]
        )
        self.fresh: list[_Table] = []
        self.fresh_rows = 0
        self.repeating = False  # did most rows of the last block come from known sources?

    @property
    def size(self) -> int:
        return len(self.table.values) + self.fresh_rows

    def add(
        self, src: NDArray, packets: NDArray, octets: NDArray, rejected: NDArray, spoofable: NDArray
    ) -> None:
        columns = [
            packets,
            octets >> 32,
            octets & 0xFFFFFFFF,
            packets * rejected,
            np.ones_like(packets),
            packets * spoofable,
        ]
        known_values = self.table.values
        if len(known_values) and self.repeating:
            # Most sources of late were known: their rows are summed into the table by position, unsorted.
            at = np.minimum(np.searchsorted(known_values, src), len(known_values) - 1)
            known = known_values[at] == src
            self.repeating = 2 * int(np.count_nonzero(known)) >= len(known)
            if known.all():  # the usual case once the sources are known: no row to leave out
                for mine, theirs in zip(self.table.columns, columns, strict=True):
                    np.add.at(mine, at, theirs)
                return
            if known.any():
                for mine, theirs in zip(self.table.columns, columns, strict=True):
                    np.add.at(mine, at[known], theirs[known])
                src, columns = src[~known], [column[~known] for column in columns]
            block = _Table.grouped(src, columns)
        else:
            # Mostly new sources (a spoofed flood): the block's own sums first (one sort), then its distinct
            # sources looked up in order, several times faster than a search for scattered keys.
            block = _Table.grouped(src, columns)
            if len(known_values):
                at = np.minimum(np.searchsorted(known_values, block.values), len(known_values) - 1)
                known = known_values[at] == block.values
                self.repeating = 2 * int(np.count_nonzero(known)) >= len(known)
                if known.any():
                    rows = at[known]  # distinct: a plain indexed sum is exact
                    for mine, theirs in zip(self.table.columns, block.columns, strict=True):
                        mine[rows] += theirs[known]
                    if known.all():
                        return
                    block = block.select(~known)
        self.fresh.append(block)
        self.fresh_rows += len(block.values)
        if self.fresh_rows >= self.MERGE_ROWS:
            self._merge()

    def _merge(self) -> None:
        tables = [self.table, *self.fresh]
        self.table = _Table.grouped(
            np.concatenate([t.values for t in tables]),
            [np.concatenate([t.columns[i] for t in tables]) for i in range(_COLUMNS)],
            runs=True,
        )
        self.fresh, self.fresh_rows = [], 0

    def take(self) -> _Table | None:
        """The merged table, leaving this empty; None when there is nothing."""
        if self.fresh:
            self._merge()
        if not len(self.table.values):
            return None
        taken = self.table
        self._reset()
        return taken


def _inside_mask(values: NDArray, ranges: tuple[tuple[int, int], ...]) -> NDArray:
    inside = np.zeros(len(values), dtype=bool)
    for first, last in ranges:
        inside |= (values >= first) & (values <= last)
    return inside


def _fold_into_levels(summary: TrafficSummary, table: _Table) -> None:
    """Add IPv4 sources held in arrays to every IPv4 level of `summary`, like TrafficSummary.add would.

    The table is sorted by address, so every prefix's sources are adjacent: each level is one pass of
    sums between its boundaries (no sort per level).
    """
    summary.total_packets += int(table.packets.sum())
    summary.total_bytes += (int(table.bytes_high.sum()) << 32) + int(table.bytes_low.sum())
    summary.reject_packets += int(table.rejected.sum())
    sums = [table.packets, table.bytes_high, table.bytes_low, table.rejected, table.spoofable]
    for (version, length), level in summary.levels.items():
        if version != 4:
            continue
        prefixes = table.values >> (32 - length)
        if length == 32:
            columns = sums
        else:
            firsts = np.flatnonzero(np.concatenate(([True], prefixes[1:] != prefixes[:-1])))
            prefixes = prefixes[firsts]
            columns = [np.add.reduceat(column, firsts) for column in sums]
        floor = 0
        known = np.isin(prefixes, np.fromiter(level.counters, dtype=np.int64, count=len(level.counters)))
        fresh = np.flatnonzero(~known)
        if len(fresh) > level.capacity + 1:
            # As in LevelSummary.merge: only the capacity+1 heaviest new keys can survive compaction.
            weights = columns[0][fresh]
            top = np.argpartition(-weights, level.capacity)[: level.capacity + 1]
            floor = int(weights[top].min())
            chosen = np.concatenate([np.flatnonzero(known), fresh[top]])
        else:
            chosen = np.arange(len(prefixes))
        rows = zip(prefixes[chosen].tolist(), *(column[chosen].tolist() for column in columns), strict=True)
        if not level.counters and len(chosen) <= level.capacity:
            # What merge would build, without its lookups: nothing to add to and nothing to compact (the
            # detector's summary of one delivery, the first flush of a capture).
            level.counters = {key: Counter(p, (h << 32) + lo, r, s) for key, p, h, lo, r, s in rows}
        else:
            level.merge({key: [p, (h << 32) + lo, r, s] for key, p, h, lo, r, s in rows}, floor=floor)


# Held levels work in int64 and float64: packets below 2**53 divide exactly as Python's int / int does, and
# bytes below 2**62 neither overflow nor round differently from Python's int * float.
_EXACT_PACKETS = 2**53
_EXACT_BYTES = 2**62


class _HeldLevel:
    """One IPv4 LevelSummary as arrays sorted by key: merged and compacted exactly as LevelSummary.merge
    and compact do, the same cut, floor and float64 scaling of bytes, rejects and spoofable packets."""

    __slots__ = ("bytes", "error", "keys", "level", "packets", "rejected", "spoofable")

    def __init__(self, level: LevelSummary) -> None:
        self.level = level
        items = sorted(level.counters.items())
        self.keys = np.array([key for key, _ in items], dtype=np.int64)
        self.packets = np.array([c.packets for _, c in items], dtype=np.int64)
        self.bytes = np.array([c.bytes for _, c in items], dtype=np.int64)
        self.rejected = np.array([c.reject_packets for _, c in items], dtype=np.int64)
        self.spoofable = np.array([c.spoofable for _, c in items], dtype=np.int64)
        self.error = level.error

    def merge(self, prefixes: NDArray, columns: list[NDArray]) -> None:
        """Add one batch's exact sums per prefix (`prefixes` sorted and distinct; columns packets, bytes,
        rejected, spoofable), leaving out new keys that cannot survive compaction, then compact."""
        capacity = self.level.capacity
        keys = self.keys
        at: NDArray = np.searchsorted(keys, prefixes)
        known = np.zeros(len(prefixes), dtype=bool)
        inside = np.flatnonzero(at < len(keys))
        known[inside] = keys[at[inside]] == prefixes[inside]
        fresh = np.flatnonzero(~known)
        floor = 0
        if len(fresh) > capacity + 1:
            # As in LevelSummary.merge: only the capacity+1 heaviest new keys can survive compaction.
            weights = columns[0][fresh]
            top = np.argpartition(-weights, capacity)[: capacity + 1]
            floor = int(weights[top].min())
            fresh = fresh[top]
        rows = at[known]
        mine = [self.packets, self.bytes, self.rejected, self.spoofable]
        for column, theirs in zip(mine, columns, strict=True):
            column[rows] += theirs[known]
        if len(fresh):
            keys = np.concatenate([keys, prefixes[fresh]])
            order = np.argsort(keys, kind="stable")
            self.keys = keys[order]
            mine = [
                np.concatenate([column, theirs[fresh]])[order]
                for column, theirs in zip(mine, columns, strict=True)
            ]
            self.packets, self.bytes, self.rejected, self.spoofable = mine
        self._compact(floor)

    def _compact(self, floor: int) -> None:
        count, capacity = len(self.keys), self.level.capacity
        if count <= capacity:
            return
        # The (capacity+1)-th largest count, as LevelSummary.compact finds it by sorting.
        cut = max(int(np.partition(self.packets, count - 1 - capacity)[count - 1 - capacity]), floor)
        remaining = self.packets - cut
        kept = remaining > 0
        remaining = remaining[kept]
        scale = remaining / self.packets[kept]
        self.bytes = (self.bytes[kept] * scale).astype(np.int64)
        self.rejected = (self.rejected[kept] * scale).astype(np.int64)
        self.spoofable = (self.spoofable[kept] * scale).astype(np.int64)
        self.packets, self.keys = remaining, self.keys[kept]
        self.error += cut

    def publish(self) -> None:
        """Write the arrays back as the level's counters."""
        rows = zip(
            self.keys.tolist(),
            self.packets.tolist(),
            self.bytes.tolist(),
            self.rejected.tolist(),
            self.spoofable.tolist(),
            strict=True,
        )
        self.level.counters = {key: Counter(p, b, r, s) for key, p, b, r, s in rows}
        self.level.error = self.error


class _HeldLevels:
    """A summary's IPv4 levels held in arrays across drains, with bounds on what their counters can reach:
    a fold that could leave exact integer arithmetic is refused (the caller folds through the levels)."""

    def __init__(self, summary: TrafficSummary, packets: int, octets: int) -> None:
        self.summary = summary
        self.levels = [
            (length, _HeldLevel(level)) for (version, length), level in summary.levels.items() if version == 4
        ]
        self.packets_bound, self.bytes_bound = packets, octets  # no counter can exceed these

    @classmethod
    def of(cls, summary: TrafficSummary) -> _HeldLevels | None:
        """The summary's IPv4 levels in arrays; None when their counters are already beyond exact range."""
        packets = octets = 0
        for (version, _), level in summary.levels.items():
            if version == 4:
                packets = max(packets, sum(c.packets for c in level.counters.values()))
                octets = max(octets, sum(abs(c.bytes) for c in level.counters.values()))
        if packets >= _EXACT_PACKETS or octets >= _EXACT_BYTES:
            return None
        return cls(summary, packets, octets)

    def fold(self, table: _Table) -> bool:
        """Add the table's sources to the summary's totals and to every held level, as
        `_fold_into_levels` would; False (and nothing done) when the counters could leave exact range."""
        packets = int(table.packets.sum())
        octets = (int(table.bytes_high.sum()) << 32) + int(table.bytes_low.sum())
        if self.packets_bound + packets >= _EXACT_PACKETS or self.bytes_bound + octets >= _EXACT_BYTES:
            return False
        self.packets_bound += packets
        self.bytes_bound += octets
        summary = self.summary
        summary.total_packets += packets
        summary.total_bytes += octets
        summary.reject_packets += int(table.rejected.sum())
        sums = [table.packets, (table.bytes_high << 32) + table.bytes_low, table.rejected, table.spoofable]
        for length, held in self.levels:
            prefixes = table.values >> (32 - length)
            if length == 32:
                held.merge(prefixes, sums)
                continue
            firsts = np.flatnonzero(np.concatenate(([True], prefixes[1:] != prefixes[:-1])))
            held.merge(prefixes[firsts], [np.add.reduceat(column, firsts) for column in sums])
        return True

    def publish(self) -> None:
        for _, held in self.levels:
            held.publish()
