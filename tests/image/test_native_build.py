"""The native build of the pinned llama.cpp through scripts/build-llama-server and build.sh."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from llama_server import pins, source_tarball, source_tree

pytestmark = pytest.mark.image

# What GGML_CPU_ALL_VARIANTS builds for x86 in ggml 0.26.0 (ggml/src/CMakeLists.txt).
X86_VARIANTS = {
    "x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell", "skylakex",
    "cannonlake", "cascadelake", "icelake", "cooperlake", "zen4", "alderlake", "sapphirerapids",
}  # fmt: skip
# Built but not shipped (images/llama-cpp/build.sh says why).
NOT_SHIPPED = {"sapphirerapids"}


def run(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True)
    return done.stdout + done.stderr


def test_source_is_the_pinned_tarball(payload: Path) -> None:
    digest = hashlib.sha256(source_tarball().read_bytes()).hexdigest()
    assert digest == pins()["LLAMA_CPP_SDIST_SHA256"]


def test_expected_variants_are_what_the_source_defines(payload: Path) -> None:
    """Fails on a llama.cpp bump that adds or drops an x86 level, so the list stays true."""
    cmake = (source_tree() / "ggml" / "src" / "CMakeLists.txt").read_text()
    x86 = cmake[cmake.index("GGML_CPU_ALL_VARIANTS") :]
    x86 = x86[x86.index('GGML_SYSTEM_ARCH STREQUAL "x86"') :]
    x86 = x86[: x86.index('GGML_SYSTEM_ARCH STREQUAL "ARM"')]
    assert set(re.findall(r"ggml_add_cpu_backend_variant\((\w+)", x86)) == X86_VARIANTS


def test_every_x86_variant_is_shipped_but_the_broken_amx_one(payload: Path) -> None:
    shipped = {
        p.name.removeprefix("libggml-cpu-").removesuffix(".so")
        for p in payload.glob("libggml-cpu-*.so")
    }
    assert shipped == X86_VARIANTS - NOT_SHIPPED


def test_version_reports_the_pinned_build_number(payload: Path) -> None:
    out = run(payload / "llama-server", "--version")
    assert f"(build {pins()['LLAMA_CPP_BUILD_NUMBER']}, commit sdist-" in out, out
    assert "unknown" not in out


def test_main_thread_stack_is_8_mib_for_musl(payload: Path) -> None:
    """musl sizes thread stacks from PT_GNU_STACK; its default is too small for llama.cpp."""
    program_headers = run("readelf", "-lW", payload / "llama-server")
    stack = next(line for line in program_headers.splitlines() if "GNU_STACK" in line)
    assert int(stack.split()[5], 16) == 8 * 1024 * 1024, stack


def test_libraries_resolve_inside_the_payload(payload: Path) -> None:
    """$ORIGIN rpath: the image copies the payload directory and nothing else."""
    linked = run("ldd", payload / "llama-server")
    assert "not found" not in linked
    for lib in ("libllama.so", "libggml.so", "libggml-base.so"):
        line = next(x for x in linked.splitlines() if x.strip().startswith(lib))
        assert f"=> {payload}/" in line, line
