"""A command keeps freed memory for reuse where glibc lets it (`keep_freed_memory`), and runs unchanged
where it does not."""

from __future__ import annotations

import pytest

from floodgate.cli import main as cli_main

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


class _Libc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1


def test_glibc_keeps_freed_blocks_and_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _Libc()
    monkeypatch.setattr("ctypes.CDLL", lambda name: libc)
    cli_main.keep_freed_memory()
    assert libc.calls == [(M_TRIM_THRESHOLD, 256 << 20), (M_MMAP_THRESHOLD, 64 << 20)]


@pytest.mark.parametrize("missing", [OSError("no C library"), AttributeError("no mallopt")])
def test_without_mallopt_nothing_changes(missing: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    def cdll(name: object) -> object:
        raise missing

    monkeypatch.setattr("ctypes.CDLL", cdll)
    cli_main.keep_freed_memory()  # no error: the command runs with the allocator's defaults
