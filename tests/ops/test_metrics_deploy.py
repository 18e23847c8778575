"""The metrics profile: Prometheus and Grafana, and a dashboard that queries only real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import profile_load
from tests.ops.conftest import DUMMY_SECRETS, ROOT, compose_run

DEPLOY = ROOT / "artcritic" / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "artcritic.json"
TOKEN = "a-metrics-token-0123456789"
# PromQL words that are not metric names.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "le",
}  # fmt: skip


@pytest.fixture(scope="module")
def metrics_config(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("compose-metrics")
    result = compose_run(
        compose_cmd, tmp, "--profile", "metrics", "config", "--format", "json", env=DUMMY_SECRETS
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_prometheus_and_grafana_run_only_in_the_metrics_profile(metrics_config: Any) -> None:
    services = metrics_config["services"]
    assert services["prometheus"]["profiles"] == ["metrics"]
    assert services["grafana"]["profiles"] == ["metrics"]
    assert not services["prometheus"].get("ports")  # reached by Grafana on the network
    (port,) = services["grafana"]["ports"]
    assert port["host_ip"] == "127.0.0.1"
    assert port["target"] == 3000
    publishing = {name for name, svc in services.items() if svc.get("ports")}
    assert publishing == {"web", "grafana"}


def test_both_refuse_to_start_without_their_secret(metrics_config: Any) -> None:
    services = metrics_config["services"]
    prometheus = " ".join(services["prometheus"]["command"])
    # (Compose prints a shell's $ escaped as $$ again.)
    assert re.search(r'if \[ -z "\$\$?ARTCRITIC_METRICS_TOKEN" \]', prometheus)
    assert "credentials" not in prometheus  # the token goes to a file, not to a flag
    grafana = " ".join(services["grafana"]["command"])
    assert re.search(r'if \[ -z "\$\$?GF_SECURITY_ADMIN_PASSWORD" \]', grafana)
    assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_grafana_is_provisioned_from_the_repository(metrics_config: Any) -> None:
    mounts = {v["target"]: v for v in metrics_config["services"]["grafana"]["volumes"]}
    assert (
        Path(mounts["/etc/grafana/provisioning"]["source"]) == DEPLOY / "grafana" / "provisioning"
    )
    assert Path(mounts["/var/lib/grafana/dashboards"]["source"]) == DASHBOARD.parent
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    (datasource,) = source["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["uid"] == "artcritic-prometheus"


def test_prometheus_scrapes_metrics_with_the_bearer_token_file() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/prometheus/metrics-token",
    }
    assert job["static_configs"] == [{"targets": ["web:8000"]}]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end() :].lstrip()[:1]
        word = match.group(0)
        if following == "(" or word.lower() in KEYWORDS:
            continue  # a function or a keyword
        names.add(word)
    return names


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, phase) (rate(artcritic_x_bucket{gpu="a"}[5m]))) '
        "/ ignoring(currency) artcritic_y_total == 1"
    )
    assert metric_names(expr) == {"artcritic_x_bucket", "artcritic_y_total"}


@pytest.mark.django_db
def test_every_dashboard_panel_queries_metrics_that_metrics_exposes(settings: Any) -> None:
    settings.ARTCRITIC_METRICS_TOKEN = TOKEN
    profile_load("sim-32gb")
    scraped = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert scraped.status_code == 200
    exposed: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(scraped.content.decode()):
        exposed.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    dashboard = json.loads(DASHBOARD.read_text())
    queried: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in metric_names(target["expr"]):
                queried.setdefault(name, set()).add(panel["title"])
    assert queried, "the dashboard has no queries"
    missing = {name: sorted(panels) for name, panels in queried.items() if name not in exposed}
    assert missing == {}
    # And the dashboard shows what the issue asks for, not a subset.
    for name in (
        "artcritic_gpu_memory_headroom_bytes",
        "artcritic_runtime_state",
        "artcritic_queue_depth",
        "artcritic_phase_duration_seconds_bucket",
        "artcritic_swaps_total",
        "artcritic_job_failures_total",
        "artcritic_critic_tokens_per_second",
        "artcritic_eta_error_ratio",
        "artcritic_live_event_latency_seconds_bucket",
        "artcritic_live_connected_sockets",
    ):
        assert name in queried, name
