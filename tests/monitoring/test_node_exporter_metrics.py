"""node_exporter's metric names, listed by running the pinned binary (the release
kube-prometheus-stack's chart deploys) on loopback: every name llamafleet.monitoring.metrics
gives it, which the tier dashboard queries, is among the samples it exports."""

from __future__ import annotations

from pathlib import Path

from support.exporters import exporting, pinned, reported_version, scrape
from support.loopback import free_port
from support.promql import exposition_names

from llamafleet.monitoring import metrics


def test_node_exporter_is_the_pinned_release(node_exporter: Path) -> None:
    version = pinned("NODE_EXPORTER_VERSION")
    assert reported_version([str(node_exporter), "--version"]).startswith(
        f"node_exporter, version {version} "
    )


def test_node_exporter_exports_every_name_the_dashboards_query(
    node_exporter: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    argv = [str(node_exporter), f"--web.listen-address={url.removeprefix('http://')}"]
    with exporting(argv, url, tmp_path / "node_exporter.log"):
        text = scrape(f"{url}/metrics")
    exported = exposition_names(text)
    assert metrics.EXPORTERS["node_exporter"] - exported == set()
    # The CPU seconds come per mode: the dashboards' "idle" is one of them.
    assert 'mode="idle"' in text
