"""A real Prometheus for tests: on 127.0.0.1, scraping one target every second, temp storage."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from consumer.lifecycle import StartStop

# Grafana's interval variables, given values that hold several 1 s scrapes.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1m",
    "__range_s": "60",
    "__range_ms": "60000",
    "__interval_ms": "60000",
    "datasource": "prometheus",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")

# Just enough PromQL lexing to find metric names: strings, matchers, ranges and grouping
# clauses are removed; what remains that is not a function, keyword or number is a metric.
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def require_binary(name: str) -> str:
    """The binary's path; skip without it, except in CI (CI=true), where its absence fails."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (Debian: apt-get install prometheus)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def referenced_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGE, _GROUPING):
        text = pattern.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def exposed_metric_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry can expose (counters with `_total`, histogram parts)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def _walk_panels(panels: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        # Collapsed rows keep their panels inside them.
        yield from _walk_panels(panel.get("panels", []))


def substitute(expr: str, variables: Mapping[str, str] = GRAFANA_VARIABLES) -> str:
    """The expression with dashboard variables replaced; an unknown variable is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise ValueError(f"no value for dashboard variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(replace, expr)


def panel_queries(
    dashboard: Mapping[str, Any], variables: Mapping[str, str] = GRAFANA_VARIABLES
) -> list[str]:
    """Every visible PromQL query of every panel, ready for the Prometheus HTTP API."""
    queries = []
    for panel in _walk_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("hide") or not target.get("expr"):
                continue
            queries.append(substitute(target["expr"], variables))
    return queries


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrometheusServer(StartStop):
    """A `prometheus` process scraping `target` (host:port) every second until stopped."""

    def __init__(
        self,
        target: str,
        *,
        binary: str | None = None,
        job: str = "cxone-role-sync",
        rule_files: Sequence[Path] = (),
        metrics_path: str = "/metrics",
    ) -> None:
        self.target = target
        self.binary = binary or require_binary("prometheus")
        self.job = job
        self.rule_files = [Path(path).resolve() for path in rule_files]
        self.metrics_path = metrics_path
        self.port = 0
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        """The base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        """The generated prometheus.yml."""
        return {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": self.metrics_path,
                    "static_configs": [{"targets": [self.target]}],
                }
            ],
        }

    async def start(self, within: float = 60.0) -> None:
        """Start the process and wait until its API says it is ready."""
        self._directory = tempfile.TemporaryDirectory(prefix="prometheus-")
        root = Path(self._directory.name)
        config = root / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        self.port = _free_port()
        log = (root / "prometheus.log").open("wb")
        self._process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, not awaited
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._client = httpx.AsyncClient(base_url=self.url, timeout=5.0)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited early:\n{self.log_tail()}")
            try:
                response = await self._client.get("/-/ready")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {within} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines Prometheus logged, for failure messages."""
        if self._directory is None:
            return ""
        path = Path(self._directory.name) / "prometheus.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        """Stop the process and delete its storage."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                await asyncio.to_thread(self._process.wait)
            self._process = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    async def _get(self, path: str, **params: str) -> Any:
        if self._client is None:
            raise RuntimeError("prometheus is not started")
        response = await self._client.get(path, params=params)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) the expression evaluates to now."""
        data = await self._get("/api/v1/query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        data = await self._get("/api/v1/targets", state="active")
        targets: list[dict[str, Any]] = data["activeTargets"]
        return targets

    async def wait_for_series(self, expr: str, within: float = 30.0) -> list[dict[str, Any]]:
        """Poll until the expression returns at least one series, or fail with the scrape state."""
        deadline = time.monotonic() + within
        while True:
            result = await self.query(expr)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no series for {expr!r}; targets: {await self.targets()}")
            await asyncio.sleep(0.2)
