"""The shell blocks of the README and the docs marked `sandbox`, run as written against one.

One session for the module, started the way the README says: `cxone-role-sync sandbox` in a
directory of its own, its `export` lines taken as the environment, and the consumer started with
the README's own `run` line. Then every `sandbox` block runs, in page order, as a script in that
environment (tests/doc_examples.py says how a block becomes a script), must exit 0 and must
print each `#>` line it shows. The directory holds `event.json`, the contract's example event
(docs/events.md), for the commands that send a file.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from tests.doc_examples import (
    ROOT,
    Block,
    blocks,
    clean_environment,
    sandbox_script,
    shell,
    unprinted,
)

WITHIN = 120.0
"""Seconds any one step may take before a test fails; generous for a loaded machine."""
SANDBOX_BLOCKS = [block for block in blocks() if block.marker == "sandbox"]
GUIDE_ENDS = "#   curl -s localhost:9400/metrics"


@dataclass(frozen=True)
class Session:
    """A running sandbox and consumer, the environment that points at them, and where to run."""

    env: dict[str, str]
    directory: Path
    service_log: Path


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """The lines of a stream as they come, read by a thread so a test can wait with a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _guide(lines: queue.Queue[str]) -> list[str]:
    """What the sandbox prints up to its last guide line."""
    printed: list[str] = []
    deadline = time.monotonic() + WITHIN
    while not printed or not printed[-1].startswith(GUIDE_ENDS):
        printed.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
    return printed


def _stop(process: subprocess.Popen[str], sig: int) -> None:
    """Signal a process group started here, and reap it."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _started_by(name: str) -> str:
    """The line of a `sandbox` block that starts `sandbox` or `run`: the README shows both."""
    scripts = [sandbox_script(block.text) for block in SANDBOX_BLOCKS]
    if name == "sandbox":
        assert any(script.starts_sandbox for script in scripts)
        return "cxone-role-sync sandbox"
    services = [script.service for script in scripts if script.service]
    assert services, "no sandbox block starts the consumer"
    return services[0]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """The sandbox and the consumer, started as the README starts them."""
    directory = tmp_path_factory.mktemp("newcomer")
    [contract] = [b for b in blocks() if b.page.name == "events.md" and b.language == "json"]
    (directory / "event.json").write_text(contract.text)
    sandbox = subprocess.Popen(
        ["bash", "-c", _started_by("sandbox")],
        cwd=directory,
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    service: subprocess.Popen[str] | None = None
    try:
        assert sandbox.stdout is not None
        exports = dict(
            line.removeprefix("export ").partition("=")[::2]
            for line in _guide(_lines(sandbox.stdout))
            if line.startswith("export ")
        )
        assert {"KAFKA_BOOTSTRAP_SERVERS", "CXONE_SCIM_BASE_URL", "POLICY_FILE"} <= set(exports)
        # Port 0: the consumer's metrics port must not collide with anything on this machine.
        env = clean_environment({**exports, "METRICS_PORT": "0"})
        service_log = directory / "service.log"
        with service_log.open("w") as log:
            service = subprocess.Popen(
                ["bash", "-c", _started_by("run")],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        yield Session(env, directory, service_log)
    finally:
        if service is not None:
            _stop(service, signal.SIGTERM)
        _stop(sandbox, signal.SIGINT)


def test_the_sandbox_blocks_include_the_readme_loop() -> None:
    """The README's sandbox loop is among the blocks run here, with lines it must print."""
    readme = [block for block in SANDBOX_BLOCKS if block.page == ROOT / "README.md"]
    assert len(readme) == 2
    assert any(sandbox_script(block.text).shown for block in readme)


@pytest.mark.parametrize("block", SANDBOX_BLOCKS, ids=[block.where for block in SANDBOX_BLOCKS])
def test_sandbox_block_runs_as_written(block: Block, session: Session) -> None:
    """The block's commands succeed against the sandbox and print every line it shows."""
    made = sandbox_script(block.text)
    completed = shell(made.script, env=session.env, cwd=session.directory, within=WITHIN)
    service = session.service_log.read_text()[-3000:]
    print("=====", block.where, "\n", completed.stdout)
    assert completed.returncode == 0, f"{completed.stderr}\n--- service log ---\n{service}"
    assert unprinted(made.shown, completed.stdout) == [], completed.stdout
