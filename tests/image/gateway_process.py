"""The real gateway (LiteLLM's proxy with the llamafleet_gateway plugin) as native processes,
configured by the same functions the Gateway component renders its ConfigMap with, and a real
`redis-server` on loopback."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from llama_server import REPO
from support.loopback import free_port

from llamafleet.components.gateway import gateway_argv, gateway_environment
from llamafleet.components.gateway_config import (
    CONFIG_FILE,
    KEYS_FILE,
    ROUTES_FILE,
    Backend,
    TeamLimits,
    gateway_command,
    internal_key_env,
    litellm_config,
    routes,
)
from llamafleet_gateway import environment
from llamafleet_gateway.keys import key_hash


def gateway_venv() -> Path:
    """The gateway's own environment (scripts/gateway-venv: the lock, with hashes)."""
    done = subprocess.run(
        [str(REPO / "scripts" / "gateway-venv")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/gateway-venv failed:\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


def self_signed(directory: Path) -> Path:
    """tls.crt and tls.key for 127.0.0.1 (openssl; EC P-256, one day), as a kubernetes.io/tls
    Secret holds them; returns `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(directory / "tls.key"),
            "-out",
            str(directory / "tls.crt"),
        ],
        check=True,
        capture_output=True,
    )
    return directory


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("redis-server not installed: apt-get install redis-server (.ci/run does)")
    return found


@dataclass
class Redis:
    """A password-protected redis-server on loopback, no persistence."""

    password: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, workdir: Path) -> Redis:
        config = workdir / "redis.conf"
        config.write_text(
            f'port {self.port}\nbind 127.0.0.1\nsave ""\nappendonly no\ndir {workdir}\n'
            f"requirepass {self.password}\n"
        )
        config.chmod(0o600)
        self.process = subprocess.Popen(
            [redis_server_binary(), str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not listen in 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class Gateway:
    """One gateway process: LiteLLM's proxy on `port`, the plugin's metrics on `metrics_port`."""

    venv: Path
    workdir: Path
    backends: Sequence[Backend]
    internal_keys: Mapping[str, str]
    client_keys: Mapping[str, str]  # key -> team
    limits: Mapping[str, TeamLimits] = field(default_factory=dict[str, TeamLimits])
    redis: Redis | None = None
    request_timeout_seconds: int = 120
    tls_dir: Path | None = None  # tls.crt and tls.key: the gateway serves TLS itself
    env: Mapping[str, str] = field(default_factory=dict[str, str])  # e.g. peer keys
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "gateway.log"

    def start(self) -> Gateway:
        self.workdir.mkdir(parents=True, exist_ok=True)
        redis = None if self.redis is None else ("127.0.0.1", self.redis.port)
        config = litellm_config(self.backends, self.request_timeout_seconds, redis)
        (self.workdir / CONFIG_FILE).write_text(yaml.safe_dump(config))
        (self.workdir / ROUTES_FILE).write_text(routes(self.backends, self.limits).to_json())
        self.set_keys(self.client_keys)
        env = {
            **os.environ,
            **gateway_environment(str(self.workdir), str(self.workdir), self.metrics_port),
            "PYTHONPATH": str(REPO),
            environment.METRICS_ADDR: "127.0.0.1",
            "LITELLM_MASTER_KEY": f"sk-{secrets.token_hex(24)}",
            **{internal_key_env(team): key for team, key in self.internal_keys.items()},
            **self.env,
        }
        if self.redis is not None:
            env["REDIS_PASSWORD"] = self.redis.password
            env[environment.REDIS] = f"127.0.0.1:{self.redis.port}"
        tls = None if self.tls_dir is None else str(self.tls_dir)
        argv = gateway_argv(str(self.workdir / CONFIG_FILE), "127.0.0.1", self.port, tls)
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                gateway_command(str(self.venv / "bin" / "python"), argv),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )
        return self

    def wait_ready(self, deadline_s: float = 240) -> Gateway:
        assert self.process is not None
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited {self.process.returncode}:\n{self.log_text()}")
            try:
                if self.request("GET", "/health/liveliness")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"gateway not ready in {deadline_s} s:\n{self.log_text()}")

    def set_keys(self, keys: Mapping[str, str]) -> None:
        """Swap in a new hashes file, as the kubelet updates the mounted Secret."""
        staged = self.workdir / f".{KEYS_FILE}.new"
        staged.write_text(json.dumps({key_hash(key): team for key, team in keys.items()}))
        os.replace(staged, self.workdir / KEYS_FILE)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        key: str | None = None,
        timeout: float = 180,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = self.connection(timeout)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        try:
            connection.request(
                method, path, None if body is None else json.dumps(body), headers=headers
            )
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def connection(self, timeout: float = 180) -> http.client.HTTPConnection:
        """A connection to the gateway: HTTPS trusting only its own certificate when it serves
        TLS (a self-signed one for 127.0.0.1), HTTP otherwise."""
        if self.tls_dir is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        context = ssl.create_default_context(cafile=str(self.tls_dir / "tls.crt"))
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=context)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
