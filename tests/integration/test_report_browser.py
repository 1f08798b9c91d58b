"""The incident report, rendered by a real browser: headless Chromium (Debian's `chromium`, which .ci/run
installs) loads the page from a file:// URL with networking features off, and the rendered DOM must hold the
timeline and the tables.

Without chromium the test is skipped, except under CI (CI=true), where a missing browser is a failure.
Set REPORT_SCREENSHOT=docs/report.png to keep the screenshot (that is how the README's picture is made).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from floodgate.core.records import EventKind, LogEvent
from floodgate.services.capacity_hold import HELD
from tests.integration.conftest import AwsClientFactory, Tables, VpcFixture
from tests.integration.incident import Deployment, play_incident, stand_in

pytestmark = pytest.mark.integration

WINDOW = (1280, 1600)


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing under CI: .ci/run installs it with apt-get install chromium")
    pytest.skip("chromium is not installed (apt-get install chromium); under CI=true this fails instead")


def browse(page: Path, profile: Path, *args: str) -> str:
    """Run headless Chromium on the page; returns its stdout."""
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Elements(HTMLParser):
    """Counts of rendered elements: by tag, by id, and the data attributes the report sets."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, dict[str, str | None]] = {}
        self.span_cidrs: list[str] = []
        self.marks: list[str] = []
        self.rows: dict[str, int] = {}
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids[str(attributes["id"])] = attributes
        classes = (attributes.get("class") or "").split()
        if tag == "g" and "span" in classes:
            self.span_cidrs.append(str(attributes.get("data-cidr")))
        if tag == "g" and "mark" in classes:
            self.marks.extend(c for c in classes if c != "mark")
        if tag == "table":
            self._table = attributes.get("id")
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._in_body and self._table:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False


@pytest.fixture
def incident(aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables) -> Deployment:
    return play_incident(stand_in(aws_client, vpc, tables))


def test_report_renders_timeline_and_tables_in_chromium(incident: Deployment, tmp_path: Path) -> None:
    chromium()  # skip or fail before the work when there is no browser
    page = tmp_path / "report.html"
    run = incident.cli("report", "--since", "3h10m", "--html", str(page))
    assert run.code == 0, run.err
    source = page.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=|url\(|@import|https?://""", source), (
        "the page must be self-contained"
    )

    dom = Elements()
    dom.feed(browse(page, tmp_path / "profile", "--dump-dom"))
    assert {"timeline", "sources", "log"} <= set(dom.ids)
    assert dom.ids["timeline"]["data-lanes"] == "10"  # 5 sources x 2 NACLs
    # Every deny of the incident is a bar: .7 twice and 192.0.2.0/24 twice per NACL, the others once.
    assert sorted(set(dom.span_cidrs)) == [
        "192.0.2.0/24",
        "2001:db8:bad::/48",
        "203.0.113.66/32",
        "203.0.113.7/32",
        "45.33.32.156/32",
    ]
    assert len(dom.span_cidrs) == 14
    assert sorted(dom.marks) == ["EXTEND", "EXTEND", "REPAIR"]
    assert dom.rows == {"sources": 4, "log": 27, "effects": 7}
    # One traffic panel per incident (T+0..T+55m, the manual deny, now): 5, 1 and 1 samples.
    assert [dom.ids[f"traffic-{n}"]["data-points"] for n in (1, 2, 3)] == ["5", "1", "1"]

    screenshot = tmp_path / "report.png"
    browse(page, tmp_path / "profile", f"--screenshot={screenshot}")
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == WINDOW
    assert screenshot.stat().st_size > 50_000  # a rendered page, not a blank one
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(screenshot, keep)


def test_report_shades_a_capacity_hold_in_its_incident(
    aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables, tmp_path: Path
) -> None:
    chromium()
    d = stand_in(aws_client, vpc, tables)
    d.clock.at = time.time() - 1800
    hold = f"{HELD}2 instance(s) for at most 10m (scaling on alarms suspended): Threshold Crossed"
    d.enforcer.ledger.append([LogEvent(EventKind.HOLD, d.clock(), "asg:web", hold, "floodgate-detector")])
    d.clock.advance(60)
    d.detect(**{"203.0.113.7/32": 9000.0})
    d.clock.advance(300)
    d.sample(30_000.0, **{"203.0.113.7/32": (9000.0, 9000.0)})
    d.clock.advance(60)
    released = LogEvent(EventKind.RELEASE, d.clock(), "asg:web", "after 7m: OK", "floodgate-detector")
    d.enforcer.ledger.append([released])
    page = tmp_path / "hold.html"
    assert d.cli("report", "--since", "1h", "--html", str(page)).code == 0

    dom = Elements()
    dom.feed(browse(page, tmp_path / "profile", "--dump-dom"))
    panel = dom.ids["traffic-1"]  # one incident: the hold and the deny overlap
    assert "traffic-2" not in dom.ids
    assert (panel["data-points"], panel["data-holds"]) == ("1", "1")
    assert dom.rows["effects"] == 1
    assert "capacity held: web" in page.read_text(encoding="utf-8")
