"""Shared by the test suites: free ports, real S3 servers on loopback, and a watch on file opens."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from llamafleet.modelsync.store import forget_credentials

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # answering, even if with 403
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start serving {url}")


@contextmanager
def serving(name: str, argv: list[str], port: int) -> Iterator[str]:
    """Run a server on 127.0.0.1:`port` until the block ends; yields its URL."""
    binary = shutil.which(argv[0], path=str(VENV_BIN)) or shutil.which(argv[0])
    if binary is None:
        pytest.skip(f"{argv[0]} not installed (requirements-dev.txt): {name} not tested")
    process = subprocess.Popen(
        [binary, *argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, name)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 API (in memory)."""
    port = free_port()
    with serving("moto_server", ["moto_server", "-H", "127.0.0.1", "-p", str(port)], port) as url:
        yield url


@contextmanager
def rclone_s3(root: Path, access_key: str, secret_key: str) -> Iterator[str]:
    """rclone's S3 API over a folder (disk-backed, and it checks the keys)."""
    port = free_port()
    argv = [
        "rclone", "serve", "s3", str(root), "--addr", f"127.0.0.1:{port}",
        "--auth-key", f"{access_key},{secret_key}", "--config", os.devnull,
    ]  # fmt: skip
    with serving("rclone serve s3", argv, port) as url:
        yield url


def use_credentials(patch: pytest.MonkeyPatch, access_key: str, secret_key: str) -> None:
    """Credentials only in the environment (the standard chain), nothing from ~/.aws; and fresh
    sessions: botocore and boto3 sessions keep the credentials they first resolved."""
    patch.setenv("AWS_ACCESS_KEY_ID", access_key)
    patch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.delenv("AWS_PROFILE", raising=False)
    patch.delenv("AWS_SESSION_TOKEN", raising=False)
    patch.setenv("AWS_CONFIG_FILE", os.devnull)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    forget_sessions()


def forget_sessions() -> None:
    forget_credentials()
    boto3.DEFAULT_SESSION = None


class OpenWatch:
    """Records files opened under a folder, through Python's audit hooks (one for the process)."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.opened: list[str] = []

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if event == "open" and self.folder is not None and args:
            target = args[0]
            if isinstance(target, str | bytes | os.PathLike):
                text = os.path.abspath(os.fsdecode(target))  # type: ignore[arg-type]
                if text.startswith(self.folder):
                    self.opened.append(text)

    def watch(self, folder: Path) -> list[str]:
        """Start recording opens under `folder`; returns the live list."""
        self.opened = []
        self.folder = str(folder.resolve()) + os.sep
        return self.opened

    def stop(self) -> None:
        self.folder = None


OPENS = OpenWatch()
sys.addaudithook(OPENS.hook)
