"""The mutation score of the safety core, per module, after `mutmut run` (see `make mutate`).

Reads mutmut's results (mutants/**/*.py.meta in the run directory) and tests/mutation/equivalent.toml, the
list of surviving mutants that cannot change behaviour, each with its reason. A mutant counts as killed when
a test failed or timed out on it; equivalent mutants leave the denominator. Prints the score per module and
the diff of every survivor the list does not explain, and fails when one is left or a goal is missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")
KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, pytest's internal error, or a timeout
SURVIVED = 0
# Goals of issue 17: the policy and slot modules at least 90% killed, the whole safety core at least 80%.
MODULE_GOALS = {"floodgate.core.networks": 0.90, "floodgate.core.slots": 0.90}
CORE_GOAL = 0.80


@dataclass
class ModuleScore:
    module: str
    killed: int = 0
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)
    other: dict[int, int] = field(default_factory=dict)  # no tests, crashes: count as not killed
    unchecked: int = 0

    @property
    def judged(self) -> int:
        return self.killed + len(self.survivors) + sum(self.other.values())

    @property
    def score(self) -> float:
        return self.killed / self.judged if self.judged else 1.0


def load_equivalents(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    entries = tomllib.loads(path.read_text())["equivalent"]
    return {entry["mutant"]: entry["reason"] for entry in entries}


def module_of(mutant: str) -> str:
    return mutant.rpartition(".")[0]


def scores(run_dir: Path, equivalents: dict[str, str]) -> tuple[dict[str, ModuleScore], list[str]]:
    """Scores per module, and the equivalent-list entries that no longer survive (stale)."""
    by_module: dict[str, ModuleScore] = {}
    seen_equivalent: set[str] = set()
    results_seen: dict[str, int | None] = {}
    for meta in sorted((run_dir / "mutants").rglob("*.py.meta")):
        results: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        results_seen |= results
        for mutant, code in sorted(results.items()):
            score = by_module.setdefault(module_of(mutant), ModuleScore(module_of(mutant)))
            if code in KILLED:
                score.killed += 1
            elif code == SURVIVED and mutant in equivalents:
                score.equivalent += 1
                seen_equivalent.add(mutant)
            elif code == SURVIVED:
                score.survivors.append(mutant)
            elif code is None:
                score.unchecked += 1  # outside a narrowed run (MUTANTS=...)
            else:
                score.other[code] = score.other.get(code, 0) + 1
    stale = sorted(
        m for m in set(equivalents) - seen_equivalent if m in results_seen and results_seen[m] is not None
    )
    return by_module, stale


def main(argv: list[str]) -> int:
    run_dir = Path(argv[1] if len(argv) > 1 else ".mutate")
    equivalents = load_equivalents()
    by_module, stale = scores(run_dir, equivalents)
    if not by_module:
        print(f"no mutmut results under {run_dir}/mutants: run `make mutate` first")
        return 1
    failures: list[str] = []
    print(f"{'module':34} {'mutants':>7} {'killed':>6} {'equiv':>5} {'surv':>4} {'other':>5} {'score':>6}")
    for module, score in sorted(by_module.items()):
        total = score.judged + score.equivalent
        if not total:
            continue  # outside a narrowed run
        print(
            f"{module:34} {total:7} {score.killed:6} {score.equivalent:5} {len(score.survivors):4} "
            f"{sum(score.other.values()):5} {score.score:6.1%}"
        )
        goal = MODULE_GOALS.get(module)
        if goal is not None and score.score < goal:
            failures.append(f"{module}: {score.score:.1%} killed, goal {goal:.0%}")
    killed = sum(s.killed for s in by_module.values())
    judged = sum(s.judged for s in by_module.values())
    core = killed / judged if judged else 1.0
    print(f"{'safety core':34} {'':7} {killed:6} {'':5} {'':4} {'':5} {core:6.1%}")
    if core < CORE_GOAL:
        failures.append(f"safety core: {core:.1%} killed, goal {CORE_GOAL:.0%}")
    survivors = [m for s in by_module.values() for m in s.survivors]
    for mutant in survivors:
        shown = subprocess.run(
            [str(Path(sys.executable).with_name("mutmut")), "show", mutant],
            cwd=run_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"\nsurvived: {mutant}\n{shown.stdout.strip()}")
    for module, score in sorted(by_module.items()):
        for code, count in sorted(score.other.items()):
            failures.append(f"{module}: {count} mutants with exit code {code} (no tests or a crash)")
        if score.unchecked:
            print(f"note: {module}: {score.unchecked} mutants not run (narrowed run)")
    if survivors:
        failures.append(f"{len(survivors)} surviving mutants not listed in {EQUIVALENT_FILE.name}")
    for mutant in stale:
        print(f"note: {mutant} is listed as equivalent but did not survive this run (or no longer exists)")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
