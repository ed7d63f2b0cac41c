"""The fleet's alerts under the real promtool (built from the Prometheus module at the release the
pinned kube-prometheus-stack deploys): every stack's rule file passes `promtool check rules`, and
each alert fires on a synthetic series and stays silent on a healthy one
(`promtool test rules`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llamafleet.monitoring.alerts import AlertsConfig, Deployed, alerts, rule_file
from llamafleet.program.alerting import cluster_rules
from llamafleet.settings.load import load_stack_file
from llamafleet.settings.placement import placements

REPO = Path(__file__).resolve().parents[2]
STACKS = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
NS = "llamafleet-search"
DEPLOYMENT = "gemma-cpu-small"
RUNBOOKS = "https://runbooks.example/llamafleet"
DEPLOYED = Deployed(
    namespace=NS, name=DEPLOYMENT, team="search", model="gemma", tier="cpu-small", max_replicas=3
)
QUEUE = (
    f'llamacpp:requests_deferred{{namespace="{NS}",service="{DEPLOYMENT}",pod="{DEPLOYMENT}-1"}}'
)
OTHER_QUEUE = 'llamacpp:requests_deferred{namespace="someone-else",service="x",pod="x-1"}'
SPEC = f'kube_deployment_spec_replicas{{namespace="{NS}",deployment="{DEPLOYMENT}"}}'
AVAILABLE = (
    f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="{DEPLOYMENT}"}}'
)
GATEWAY = 'team="search",model="gemma",tier="cpu-small"'
QUIET = 'team="quiet",model="gemma",tier="cpu-small"'
# A pod's model fetcher as its PodMonitor scrapes it.
FETCHER = f'namespace="{NS}",pod="{DEPLOYMENT}-7d9f-x2",container="model-fetcher"'
OTHER_FETCHER = 'namespace="someone-else",pod="x-1",container="model-fetcher"'


def _runbook(alert: str) -> str:
    return f"{RUNBOOKS}#{alert.lower()}"


def _annotations(alert: str, summary: str, runbook: str) -> dict[str, str]:
    return {"summary": summary, "runbook": runbook, "runbook_url": _runbook(alert)}


QUEUE_RUNBOOK = (
    f"Check the autoscaler (kubectl get scaledobject,hpa -n {NS}) and whether new pods are "
    "Pending or loading."
)
FETCH_RUNBOOK = (
    "store_unreachable: the store's endpoint, DNS, the egress NetworkPolicy; digest_mismatch: "
    "re-sync the model or fix its pinned digest; not_found: sync the model or fix the digest; "
    "access_denied: the store credentials Secret or IRSA role; other: kubectl logs -n "
    f"{NS} {DEPLOYMENT}-7d9f-x2 -c model-fetcher."
)


def _fetcher(fetcher: str, reason: str, failed: str, failures: str) -> list[dict[str, str]]:
    """A fetcher's series as its PodMonitor scrapes them: `failed`, the latest attempt's failure
    gauge for `reason`; `failures`, the failure counter for it; in progress while `failed` has
    samples."""
    running = " ".join(v if v.startswith("_") or v == "stale" else "1" for v in failed.split())
    return [
        {
            "series": f'llamafleet_model_fetch_last_attempt_failed{{{fetcher},reason="{reason}"}}',
            "values": failed,
        },
        {
            "series": f'llamafleet_model_fetch_failures_total{{{fetcher},reason="{reason}"}}',
            "values": failures,
        },
        {"series": f"llamafleet_model_fetch_in_progress{{{fetcher}}}", "values": running},
    ]


AT_MAX_RUNBOOK = (
    "Requests wait or spill to the next tier: raise models.<model>.replicas.max (within the "
    "team's quota and the tier's nodes) or add a tier to the model."
)

# Per alert: (series of a fault, when it is evaluated, the alert expected then; series of a
# healthy fleet, evaluated at the same time, where it must stay silent). Series use promtool's
# expanding notation (`a+bxN`), one sample a minute.
CASES: dict[str, dict[str, Any]] = {
    "LlamafleetQueueGrowing": {
        "firing": [{"series": QUEUE, "values": "0+1x20"}],
        "at": "12m",
        "labels": {"severity": "warning", "namespace": NS, "service": DEPLOYMENT},
        "annotations": _annotations(
            "LlamafleetQueueGrowing",
            f"12 requests wait at {NS}/{DEPLOYMENT} and the queue keeps growing",
            QUEUE_RUNBOOK,
        ),
        # A burst that drains, a steady non-empty queue, and a growing queue that is not ours.
        "healthy": [
            {"series": QUEUE, "values": "0 0 3 6 9 4 0 0 0 0 2 2 2 2 2 2 2 2 2 2 2"},
            {"series": OTHER_QUEUE, "values": "0+1x20"},
        ],
    },
    "LlamafleetPodsNotReady": {
        "firing": [
            {"series": SPEC, "values": "2x20"},
            {"series": AVAILABLE, "values": "2 2 1x18"},
        ],
        "at": "15m",
        "labels": {"severity": "warning", "namespace": NS, "deployment": DEPLOYMENT},
        "annotations": _annotations(
            "LlamafleetPodsNotReady",
            f"{NS}/{DEPLOYMENT} has 1 pod(s) fewer available than it wants",
            f"kubectl describe pods -n {NS}: a failing model fetch, a crash at load, or a "
            "probe that never passes.",
        ),
        # A rollout's surge pod that loads for 3 minutes.
        "healthy": [
            {"series": SPEC, "values": "2x20"},
            {"series": AVAILABLE, "values": "2 2 1 1 1 2x16"},
        ],
    },
    "LlamafleetTierPodsPending": {
        "firing": [
            {
                "series": f'kube_pod_status_unschedulable{{namespace="{NS}",pod="p1"}}',
                "values": "1x20",
            },
            {
                "series": f'kube_pod_labels{{namespace="{NS}",pod="p1",'
                'label_llamafleet_io_tier="cpu-small"}',
                "values": "1x20",
            },
        ],
        "at": "15m",
        "labels": {"severity": "warning", "namespace": NS, "label_llamafleet_io_tier": "cpu-small"},
        "annotations": _annotations(
            "LlamafleetTierPodsPending",
            f"1 pod(s) of tier cpu-small in {NS} wait for a node",
            "The tier is full: check its nodes (kubectl get nodes -l "
            "llamafleet.io/tier=<tier>), cluster-autoscaler's log on EKS, the team's quota.",
        ),
        # Scheduled at once, then Pending for 15 minutes while it fetches a large model: a pod
        # on a node is not waiting for one.
        "healthy": [
            {
                "series": f'kube_pod_status_phase{{namespace="{NS}",pod="p1",phase="Pending"}}',
                "values": "1x20",
            },
            {
                "series": f'kube_pod_status_unschedulable{{namespace="{NS}",pod="p1"}}',
                "values": "1 0x19",
            },
            {
                "series": f'kube_pod_labels{{namespace="{NS}",pod="p1",'
                'label_llamafleet_io_tier="cpu-small"}',
                "values": "1x20",
            },
        ],
    },
    "LlamafleetModelErrors": {
        "firing": [
            {
                "series": f'llamafleet_gateway_requests_total{{{GATEWAY},outcome="ok"}}',
                "values": "0+10x20",
            },
            {
                "series": f'llamafleet_gateway_requests_total{{{GATEWAY},outcome="error"}}',
                "values": "0+1x20",
            },
        ],
        "at": "15m",
        "labels": {"severity": "critical", "team": "search", "model": "gemma"},
        "annotations": _annotations(
            "LlamafleetModelErrors",
            "9.091% of search's requests to gemma fail at the gateway",
            "Look at the gateway's log and the model's pods: tiers that refuse connections or "
            "answer 5xx.",
        ),
        # 1 error in 200 (0.5 %); and a quiet model, half of its 1 request in 5 minutes failing.
        "healthy": [
            {
                "series": f'llamafleet_gateway_requests_total{{{GATEWAY},outcome="ok"}}',
                "values": "0+20x20",
            },
            {
                "series": f'llamafleet_gateway_requests_total{{{GATEWAY},outcome="error"}}',
                "values": "0+0.1x20",
            },
            {
                "series": f'llamafleet_gateway_requests_total{{{QUIET},outcome="ok"}}',
                "values": "0+0.1x20",
            },
            {
                "series": f'llamafleet_gateway_requests_total{{{QUIET},outcome="error"}}',
                "values": "0+0.1x20",
            },
        ],
    },
    "LlamafleetModelSpilling": {
        "firing": [{"series": f"llamafleet_gateway_spills_total{{{GATEWAY}}}", "values": "0+2x40"}],
        "at": "35m",
        "labels": {"severity": "info", "team": "search", "model": "gemma", "tier": "cpu-small"},
        "annotations": _annotations(
            "LlamafleetModelSpilling",
            "search's gemma spills to tier cpu-small: the tiers before it are full",
            "Expected at peaks; if it lasts, the first tier needs more replicas.max or nodes.",
        ),
        # A peak of 10 minutes.
        "healthy": [
            {"series": f"llamafleet_gateway_spills_total{{{GATEWAY}}}", "values": "0+2x10 20x30"}
        ],
    },
    "LlamafleetModelAtMaxReplicas": {
        # Saturated: the queue grew, then stayed at 6 (a fixed set of clients).
        "firing": [
            {"series": SPEC, "values": "3x20"},
            {"series": QUEUE, "values": "0 2 4 6x17"},
        ],
        "at": "12m",
        "labels": {"severity": "warning", "namespace": NS, "deployment": DEPLOYMENT},
        "annotations": _annotations(
            "LlamafleetModelAtMaxReplicas",
            "search's gemma on cpu-small is at its most replicas (3) and its queue has not emptied",
            AT_MAX_RUNBOOK,
        ),
        # Below its maximum the autoscaler can still add a replica; at it, a queue that empties
        # every few minutes is served.
        "healthy": [
            {"series": SPEC, "values": "2x20"},
            {"series": QUEUE, "values": "0+1x20"},
            {"series": SPEC.replace(DEPLOYMENT, "other"), "values": "3x20"},
            {
                "series": QUEUE.replace(DEPLOYMENT, "other"),
                "values": "0 4 4 0 4 4 0 4 4 0 4 4 0 4 4 0 4 4 0 4 4",
            },
        ],
    },
    "LlamafleetModelFetchFailing": {
        # The store is unreachable and each attempt is slow (a large model's download times out
        # after 6 minutes, then the 5-minute wait): failures at 1m and at 13m. A counter's
        # increase over 10 minutes lapses at 11m, and an alert on it resolves and fires again.
        "firing": [
            *_fetcher(FETCHER, "store_unreachable", "0 1x19", "0 1x11 2x8"),
            *_fetcher(FETCHER, "digest_mismatch", "0x20", "0x20"),
        ],
        "at": "12m",
        "labels": {
            "severity": "critical",
            "namespace": NS,
            "pod": f"{DEPLOYMENT}-7d9f-x2",
            "reason": "store_unreachable",
        },
        "annotations": _annotations(
            "LlamafleetModelFetchFailing",
            f"{NS}/{DEPLOYMENT}-7d9f-x2 cannot fetch its model: store_unreachable",
            FETCH_RUNBOOK,
        ),
        # A pod started at 9m whose fetch failed once, at 10m, then succeeded: the fetcher
        # exited (its series go stale). A fetcher still on its first attempt. And a fetcher
        # that is not ours, failing all along.
        "healthy": [
            *_fetcher(FETCHER, "store_unreachable", "_x9 0 1 stale", "_x9 0 1 stale"),
            *_fetcher(FETCHER.replace("x2", "y3"), "other", "0x20", "0x20"),
            *_fetcher(OTHER_FETCHER, "digest_mismatch", "1x20", "1+1x20"),
        ],
    },
}


def _run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def _rules() -> dict[str, Any]:
    return rule_file(alerts([DEPLOYED], "llamafleet-gateway", AlertsConfig()), RUNBOOKS)


def _unit_test(name: str, case: dict[str, Any], series: str) -> dict[str, Any]:
    expected = (
        [{"exp_labels": case["labels"], "exp_annotations": case["annotations"]}]
        if series == "firing"
        else []
    )
    return {
        "interval": "1m",
        "name": f"{name} {series}",
        "input_series": case[series],
        "alert_rule_test": [{"eval_time": case["at"], "alertname": name, "exp_alerts": expected}],
    }


def test_every_alert_has_a_case() -> None:
    assert {rule["alert"] for rule in _rules()["groups"][0]["rules"]} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_on_a_fault_and_stays_silent_when_healthy(
    name: str, promtool: Path, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(), sort_keys=False))
    case = CASES[name]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [_unit_test(name, case, "firing"), _unit_test(name, case, "healthy")],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    done = _run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_fails_when_the_alert_would_not_fire(promtool: Path, tmp_path: Path) -> None:
    """The harness can fail: the firing case with the healthy series reports a missing alert."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(), sort_keys=False))
    case = dict(CASES["LlamafleetQueueGrowing"])
    case["firing"] = case["healthy"]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [_unit_test("LlamafleetQueueGrowing", case, "firing")],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    done = _run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert done.returncode != 0
    assert "LlamafleetQueueGrowing" in done.stdout + done.stderr


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_every_stack_rule_file_passes_promtool_check(
    stack: Path, promtool: Path, tmp_path: Path
) -> None:
    settings = load_stack_file(stack)
    clusters = {p.cluster_name for p in placements(settings)}
    assert clusters
    for cluster in sorted(clusters):
        rules = cluster_rules(settings, cluster)
        (tmp_path / f"{cluster}.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        done = _run(promtool, "check", "rules", f"{cluster}.yaml", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        # One at-max alert per Deployment of the cluster, plus the six fleet-wide ones.
        here = [p for p in placements(settings) if p.cluster_name == cluster]
        assert len(rules["groups"][0]["rules"]) == 6 + len(here)
