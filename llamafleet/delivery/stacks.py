"""The stacks as the workflows see them: their order, where each runs, which get an engine run.

Where a stack runs is a security choice, so it is written here once and checked against
`.github/workflows/deploy.yml` (tests/delivery/test_workflows.py): stacks that reach dc1's API
server run on the data centre's self-hosted runners, prod on a runner inside its VPC (its EKS API
endpoint is private), the rest on GitHub's hosted runners.
"""

from __future__ import annotations

import re

# The order of deploy.yml (each waits for the one before); also the order of a comment's sections.
DEPLOY_ORDER = ("aws-dev", "onprem", "hybrid", "prod")
# Stacks that CI renders but never previews or deploys, and why.
NO_ENGINE_RUN = {
    "local": "the local stack runs against a local control plane (`make up`), not from CI",
}
GITHUB_HOSTED = ("ubuntu-24.04",)
RUNS_ON: dict[str, tuple[str, ...]] = {
    "onprem": ("self-hosted", "dc1"),
    "hybrid": ("self-hosted", "dc1"),
    "prod": ("self-hosted", "prod-vpc"),
}
STACK_FILE = re.compile(r"^stacks/Pulumi\.(?P<stack>[A-Za-z0-9_.-]+)\.yaml$")


def runs_on(stack: str) -> tuple[str, ...]:
    """The runner labels a stack's engine runs (preview, up) need."""
    return RUNS_ON.get(stack, GITHUB_HOSTED)


def ordered(stacks: set[str] | list[str]) -> list[str]:
    """Deploy order first, then `local`, then any other stack by name."""
    known = [*DEPLOY_ORDER, *NO_ENGINE_RUN]
    return [s for s in known if s in stacks] + sorted(set(stacks) - set(known))


def preview_matrix(stacks: list[str]) -> list[dict[str, object]]:
    """The `include` list of a job matrix over the stacks that get an engine run, each with its
    runner labels: `[{"stack": ..., "runs-on": [...]}, ...]`."""
    return [
        {"stack": s, "runs-on": list(runs_on(s))} for s in ordered(stacks) if s not in NO_ENGINE_RUN
    ]
