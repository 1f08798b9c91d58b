"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", params=["compiled", "numpy"])
def scan_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a module's tests twice: FastScanner with the C block scanner, then with numpy only (what a machine
    without a compiler runs, and the compiled scanner's second witness). Skips the first where the extension
    was not built."""
    fastscan = pytest.importorskip("floodgate.core.fastscan")
    if request.param == "compiled":
        if fastscan._blockscan is None:
            pytest.skip("floodgate.core._blockscan was not built")
        yield request.param
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastscan, "_blockscan", None)
        yield request.param
