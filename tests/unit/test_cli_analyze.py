"""`floodgate analyze`: inputs, output shapes and one-line errors."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.traffic import VPC_CIDR, flow_lines, sample_attack
from floodgate.cli.main import main

SAMPLE = Path(__file__).parents[2] / "samples" / "attack.log.gz"


@pytest.fixture(scope="module")
def capture_lines() -> list[str]:
    return list(flow_lines(sample_attack(), intervals=2))


def test_json_output_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(SAMPLE), "--vpc-cidr", VPC_CIDR, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "concentrated"
    assert set(out) >= {"verdict", "window_s", "denies", "records"}
    assert out["window_s"] == 180
    assert {d["cidr"] for d in out["denies"]} >= {"203.0.113.0/24"}
    assert len(out["denies"]) == 5
    for deny in out["denies"]:
        assert set(deny) == {"cidr", "pps", "bps", "share", "members", "reason"}
    assert out["records"]["parsed"] > 10_000
    assert out["records"]["skipped"] == {}


def test_plain_gzip_and_stdin_inputs_add_up(
    tmp_path: Path,
    capture_lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    half = len(capture_lines) // 3
    plain = tmp_path / "a.log"
    plain.write_text("\n".join(capture_lines[:half]) + "\nnot a record\n")
    packed = tmp_path / "b.log.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write("\n".join(capture_lines[half : 2 * half]) + "\n")
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO(("\n".join(capture_lines[2 * half :])).encode()))
    )
    assert main(["analyze", str(plain), str(packed), "-", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"]["parsed"] == len(capture_lines)
    assert out["records"]["skipped"] == {"wrong_field_count": 1}


def test_human_output_is_a_table_with_verdict_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(SAMPLE), "--budget", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["CIDR", "RATE", "BANDWIDTH", "SHARE", "SOURCES", "REASON"]
    assert "203.0.113.0/24" in out
    assert "verdict: concentrated" in out
    assert "records: " in out


def test_distributed_traffic_says_a_nacl_cannot_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "crowd.log"
    capture.write_text("\n".join(flow_lines(sample_attack()[:2000], intervals=1)) + "\n")
    assert main(["analyze", str(capture), "--min-pps", "1000"]) == 0
    out = capsys.readouterr().out
    assert "verdict: distributed" in out
    assert "WAF" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "/nonexistent/capture.log"], "cannot read /nonexistent/capture.log"),
        (["analyze", "SAMPLE", "--budget", "many"], "argument --budget: not an integer"),
        (["analyze", "SAMPLE", "--min-share", "150%"], "share must be in (0, 1]"),
        (["analyze", "SAMPLE", "--allow", "10.0.0.1/8"], "has host bits set"),
        (["analyze", "SAMPLE", "--format", "${srcaddr} ${bogus}"], "unknown flow-log field 'bogus'"),
        (["analyze", "SAMPLE", "--window", "soon"], "not a duration"),
        (["analyze"], "the following arguments are required: PATH"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(SAMPLE) if a == "SAMPLE" else a for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_truncated_gzip_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.log.gz"
    broken.write_bytes(SAMPLE.read_bytes()[:5000])
    assert main(["analyze", str(broken)]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:10] + bytes(400) + data[410:], id="deflate-data-zeroed"),
        pytest.param(lambda data: data[:-8] + bytes(4) + data[-4:], id="crc-wrong"),
        pytest.param(lambda data: data + b"\x1f\x8bnot a second member", id="garbage-member"),
    ],
)
def test_corrupt_gzip_is_a_clear_error_whichever_inflate_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[bytes], bytes]
) -> None:
    broken = tmp_path / "broken.log.gz"
    broken.write_bytes(damage(SAMPLE.read_bytes()))
    assert main(["analyze", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("floodgate: cannot read") and "Traceback" not in err


def test_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "floodgate", "analyze", str(SAMPLE), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == "concentrated"


def test_the_command_exits_with_its_code_and_says_why(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "floodgate", "analyze", str(tmp_path / "missing.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot read" in done.stderr
    assert done.stdout == ""
