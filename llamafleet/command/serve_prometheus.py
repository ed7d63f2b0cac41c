"""`llamafleet serve`'s Prometheus: a native Prometheus that loads the alert rules the engine
deployed and scrapes the native llama-server and gateway, as a cluster's Prometheus would.

The rules come from the API server: the ConfigMap FleetMonitoring declares where a cluster has
no Prometheus Operator (`llamafleet.components.monitoring`). The scrape targets get the target
labels a ServiceMonitor scrape adds (`namespace`, `service`, `pod`), so the rules' queries match
them unchanged; llama-server's /metrics needs the scraper's key, read from the team's metrics-key
Secret. Any Prometheus 2.26 or later loads this (Debian's 2.42 is what `make up` uses; its
server-rendered pages live under /classic).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from llamafleet.command.serve import (
    LOOPBACK,
    Kubectl,
    NativePod,
    ServeError,
    ensure_free,
    is_running,
    spawn,
    stop,
    wait_ready,
    write_private,
)
from llamafleet.components.monitoring import LABELS, RULES_FILE
from llamafleet.components.tenant import METRICS_KEY_SECRET

PROMETHEUS_ENV: Final = "LLAMAFLEET_PROMETHEUS"
RULES_SELECTOR: Final = ",".join(f"{k}={v}" for k, v in LABELS.items())
# Short, so an alert of the local stack (its durations are seconds) fires within a minute.
SCRAPE_INTERVAL: Final = "5s"
RETENTION: Final = "1d"


@dataclass(frozen=True)
class Target:
    """One native process Prometheus scrapes: its loopback `port`, the target labels a
    ServiceMonitor would give it, and the bearer key /metrics wants (None: no key)."""

    job: str
    port: int
    labels: dict[str, str]
    key: bytes | None = None


def prometheus_binary(environ: Mapping[str, str] | None = None) -> Path:
    """$LLAMAFLEET_PROMETHEUS, or `prometheus` on PATH.

    Raises:
        ServeError: neither is there (Debian: `apt-get install prometheus`).
    """
    env = os.environ if environ is None else environ
    found = env.get(PROMETHEUS_ENV) or shutil.which("prometheus")
    if not found:
        raise ServeError(
            f"no prometheus on PATH (Debian: apt-get install prometheus; or set {PROMETHEUS_ENV})"
        )
    return Path(found)


def deployed_rules(kubectl: Kubectl) -> dict[str, str]:
    """Every rule file the engine deployed as a ConfigMap (FleetMonitoring, any namespace):
    `<namespace>-<key>` -> its text.

    Raises:
        ServeError: kubectl failed, or the cluster holds no such ConfigMap.
    """
    found = kubectl.get("configmap", "--all-namespaces", "-l", RULES_SELECTOR)
    files = {
        f"{item['metadata']['namespace']}-{RULES_FILE}": str(item["data"][RULES_FILE])
        for item in found.get("items", [])
        if RULES_FILE in (item.get("data") or {})
    }
    if not files:
        raise ServeError(f"no alert rules deployed (no ConfigMap labelled {RULES_SELECTOR})")
    return files


def model_target(kubectl: Kubectl, pod: NativePod, port: int) -> Target:
    """The native llama-server of `pod` on `port`, scraped with its team's metrics key.

    Raises:
        ServeError: the key's Secret is missing or empty (or kubectl failed).
    """
    key = kubectl.secret(pod.namespace, METRICS_KEY_SECRET).get("key")
    if not key:
        raise ServeError(f"{pod.namespace}/{METRICS_KEY_SECRET} holds no key")
    labels = {"namespace": pod.namespace, "service": pod.deployment, "pod": f"{pod.name}-native"}
    return Target("llama-server", port, labels, key.strip())


def config(targets: list[Target], rule_files: list[str], key_dir: Path) -> dict[str, Any]:
    """prometheus.yml: every target its own job, the rule files loaded, keys read from files
    in `key_dir` (never inline: the config is printed by /classic/config)."""
    jobs: list[dict[str, Any]] = []
    for target in targets:
        job: dict[str, Any] = {
            "job_name": f"{target.job}-{target.port}",
            "static_configs": [{"targets": [f"{LOOPBACK}:{target.port}"], "labels": target.labels}],
        }
        if target.key is not None:
            job["authorization"] = {"credentials_file": str(key_dir / f"key-{target.port}")}
        jobs.append(job)
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": rule_files,
        "scrape_configs": jobs,
    }


def start_prometheus(
    binary: Path, rules: Mapping[str, str], targets: list[Target], state: Path, port: int
) -> bool:
    """Run Prometheus on loopback `port` with `rules` (file name -> text) and `targets`, unless
    it already runs exactly this; True if it (re)started. Its data lives in `state`/data and
    survives a restart. Raises ServeError (from the helpers) when the port is taken or it
    exits or is not ready in time."""
    state.mkdir(parents=True, exist_ok=True)
    rule_dir = state / "rules"
    rule_dir.mkdir(exist_ok=True)
    for stale in rule_dir.iterdir():
        stale.unlink()
    for name, text in rules.items():
        (rule_dir / name).write_text(text)
    for target in targets:
        if target.key is not None:
            write_private(state / f"key-{target.port}", target.key)
    prometheus_yml = state / "prometheus.yml"
    rule_files = [str(rule_dir / name) for name in sorted(rules)]
    prometheus_yml.write_text(yaml.safe_dump(config(targets, rule_files, state), sort_keys=False))
    keys = b"".join(t.key or b"" for t in targets)
    fingerprint = hashlib.sha256(
        prometheus_yml.read_bytes() + "".join(rules.values()).encode() + keys + bytes(binary)
    ).hexdigest()
    if is_running(state) and (state / "fingerprint").read_text() == fingerprint:
        return False
    stop(state)
    ensure_free(port)
    argv = [
        str(binary),
        f"--config.file={prometheus_yml}",
        f"--storage.tsdb.path={state / 'data'}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    process = spawn(argv, os.environ, state, "prometheus.log")
    wait_ready(f"http://{LOOPBACK}:{port}/-/ready", process, state / "prometheus.log", "prometheus")
    (state / "fingerprint").write_text(fingerprint)
    return True
