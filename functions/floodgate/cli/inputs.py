"""Reading flow-log captures: plain files, gzip files and standard input, in bounded blocks of lines."""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from floodgate.cli.errors import CliError

_GzipReader: Callable[..., Any] = gzip.GzipFile
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
try:  # ISA-L inflates about four times as fast as zlib: a gzip capture costs little more than a plain one
    from isal import igzip, isal_zlib

    _GzipReader = igzip.GzipFile
    # (its stub declares `error` an instance; it is the exception class raised on corrupt deflate data)
    _READ_ERRORS = (*_READ_ERRORS, cast("type[BaseException]", isal_zlib.error))
except ImportError:  # the standard library's zlib: the same answers, slower
    pass

BLOCK_BYTES = 2 << 20  # ~18,000 default-format records: large enough to amortise, small enough for memory


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by read_line_blocks
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if handle.read(2) == b"\x1f\x8b":
        handle.seek(0)
        reader: BinaryIO = _GzipReader(fileobj=handle, mode="rb")
        return reader
    handle.seek(0)
    return handle


def read_blocks(path: str) -> Iterator[bytes]:
    """`path` in blocks of whole lines, each ending with a newline (the last one gets one if it lacks it)."""
    stream = _open(path)
    try:
        while data := stream.read(BLOCK_BYTES):
            if not data.endswith(b"\n"):
                # Finish the block's last line from the stream: one copy, where splitting and carrying the
                # rest over would cost two.
                data += stream.readline()
                if not data.endswith(b"\n"):
                    data += b"\n"
            yield data
    except _READ_ERRORS as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
