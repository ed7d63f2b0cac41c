"""How the program's run time grows with models x tiers x teams.

Runs the real program under Pulumi's mock monitor (what `llamafleet render` and the tests do) on
synthetic stacks derived from stacks/Pulumi.prod.yaml, and reports seconds per declared resource
relative to the smallest size: 1.0 means the program scales linearly with what it declares.

    .venv/bin/python benchmarks/program/bench_render.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from llamafleet.command.mock_run import run_program
from llamafleet.program.stack import main as program_main
from llamafleet.settings.load import engine_values

PROD = Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.prod.yaml"
SIZES = [(1, 1, 1), (2, 2, 2), (4, 4, 2), (8, 4, 4), (16, 8, 4)]  # teams, models, tiers


def synthetic(teams: int, models: int, tiers: int) -> dict[str, str]:
    config: dict[str, Any] = yaml.safe_load(PROD.read_text())["config"]
    base_tier = config["llamafleet:clusters"]["prod"]["tiers"]["cpu-avx2"]
    config["llamafleet:clusters"]["prod"]["tiers"] = {
        f"cpu-{t}": copy.deepcopy(base_tier) for t in range(tiers)
    }
    base_model = config["llamafleet:models"]["gemma3-270m"]
    config["llamafleet:models"] = {
        f"model-{m}": {**copy.deepcopy(base_model), "tiers": [f"cpu-{t}" for t in range(tiers)]}
        for m in range(models)
    }
    per_pod = models * tiers * 2
    config["llamafleet:tenants"] = {
        f"team-{t}": {
            "models": [f"model-{m}" for m in range(models)],
            "quota": {"cpus": 4 * per_pod, "memoryGib": 4 * per_pod, "pods": 2 * per_pod},
            "apiKeys": ["2026-11", "2026-12"],
        }
        for t in range(teams)
    }
    return engine_values(config)


def measure(teams: int, models: int, tiers: int, repeat: int) -> tuple[int, float]:
    config = synthetic(teams, models, tiers)
    times: list[float] = []
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = len(run_program(program_main, "bench", config))
        times.append(time.perf_counter() - start)
    return count, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    print(
        "| teams x models x tiers | deployments | resources | seconds (median) "
        "| s per resource, relative to 1x1x1 |"
    )
    print("|---|---:|---:|---:|---:|")
    measure(*SIZES[0], repeat=1)  # warm-up: imports and first-use caches
    baseline = 0.0
    for teams, models, tiers in SIZES:
        count, seconds = measure(teams, models, tiers, repeat)
        per_resource = seconds / count
        baseline = baseline or per_resource
        print(
            f"| {teams} x {models} x {tiers} | {teams * models * tiers} | {count} | "
            f"{seconds:.2f} | {per_resource / baseline:.2f} |"
        )


if __name__ == "__main__":
    main()
