"""The README's ceilings and cost tables are bench/cost_model.py's output, and its figures add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cost_model.py"
BEGIN, END = "<!-- bench/cost_model.py --markdown: begin -->", "<!-- bench/cost_model.py --markdown: end -->"


def run(*arguments: str) -> str:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], check=True, capture_output=True, text=True
    ).stdout


def test_the_readme_tables_are_the_script_output() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip()
    assert shown == run("--markdown").strip(), "run `python bench/cost_model.py --markdown` into the README"


def test_every_figure_says_where_it_comes_from_and_the_log_ingestion_adds_up() -> None:
    figures = [json.loads(line) for line in run().splitlines()]
    assert figures and all(f["source"] in {"computed", "measured"} for f in figures)
    costs = {(f["size"], f["path"]): f for f in figures if f["figure"] == "monthly_cost_usd"}
    assert len(costs) == 3 * 4
    # 10 instances x 50 records/s x 115 bytes over a 730-hour month, at $0.50/GB.
    small = 10 * 50 * 115 * 730 * 3600 / 1e9
    assert costs["small", "subscription"]["parts"]["cloudwatch_logs_ingestion"] == round(small * 0.5, 2)
    # 5,000 instances: 75.6 TB on the tiers 10 TB at $0.50, 20 at $0.25, 20 at $0.10, the rest at $0.05.
    large = 5000 * 50 * 115 * 730 * 3600 / 1e9
    tiers = 10_000 * 0.5 + 20_000 * 0.25 + 20_000 * 0.10 + (large - 50_000) * 0.05
    assert costs["large", "kinesis"]["parts"]["cloudwatch_logs_ingestion"] == round(tiers, 2)
    for figure in costs.values():
        assert (
            figure["total"] == round(sum(figure["parts"].values()), 2)
            or abs(figure["total"] - sum(figure["parts"].values())) < 0.05
        )
    assert costs["medium", "shield_advanced"]["total"] == 3000.0
