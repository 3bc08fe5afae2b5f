"""The `cxone-role-sync` command: run, replay, demo, sandbox, check-policy."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import structlog
import typer
from aiokafka.errors import KafkaError

from consumer.errors import ConfigurationError
from consumer.settings import Settings, load_settings

app = typer.Typer(
    name="cxone-role-sync",
    help="Keep NICE CXone user roles equal to what the identity provider says.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code=2)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as error:
        raise _fail(str(error)) from None


def _configure_logging(settings: Settings) -> None:
    from consumer.observability.logging import configure_logging, register_secret

    configure_logging(settings.log_level.value, settings.log_format.value)
    # Every secret setting, however it was given: a new one is covered the day it is declared.
    for secret in settings.secrets():
        register_secret(secret)
    # Webhook URLs often carry their own token (chat incoming webhooks do).
    register_secret(settings.webhook_url)


# After the grace, the stream's final commit (2 s) and closing the clients (3 s) fit in this;
# past it the process leaves anyway.
SHUTDOWN_OVERRUN_SECONDS = 8.0


def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]], *, exit_within: float | None = None
) -> None:
    """Run `main(stop)`: the first SIGTERM/SIGINT sets `stop`, a second one exits at once.

    With `exit_within`, a process still running that many seconds after the first signal exits
    anyway, whatever it is waiting for.
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def leave(code: int, event: str, **fields: object) -> None:
            # Nothing unfinished was committed, so leaving now loses nothing.
            structlog.get_logger(__name__).warning(event, **fields)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

        def on_signal(signum: int) -> None:
            if stop.is_set():
                leave(130, "service.forced_exit", signal=signum)
            structlog.get_logger(__name__).info("service.stopping", signal=signum)
            stop.set()
            if exit_within is not None:
                loop.call_later(exit_within, leave, 1, "service.shutdown_overrun")

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await main(stop)

    asyncio.run(runner())


@app.command()
def run(
    dry_run: Annotated[
        bool | None, typer.Option("--dry-run", help="Decide and audit, write nothing.")
    ] = None,
    policy_file: Annotated[Path | None, typer.Option(help="Overrides POLICY_FILE.")] = None,
) -> None:
    """Run the long-lived consumer until SIGTERM or SIGINT."""
    settings = _settings(sync_dry_run=dry_run, policy_file=policy_file)
    _configure_logging(settings)
    from consumer.service import run_service

    try:
        run_until_signalled(
            lambda stop: run_service(settings, stop),
            exit_within=settings.sync_shutdown_grace_seconds + SHUTDOWN_OVERRUN_SECONDS,
        )
    except ConfigurationError as error:
        raise _fail(str(error)) from None


@app.command()
def replay(
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Replay the whole topic.")
    ] = False,
    since: Annotated[
        datetime | None,
        typer.Option(help="Replay records from this time on, e.g. 2026-11-01T00:00:00Z."),
    ] = None,
    offsets: Annotated[
        str | None, typer.Option(help="Replay from these offsets: PARTITION:OFFSET,...")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff only; write and publish nothing.")
    ] = False,
    max_revocations: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Revocations this run may apply before the guard stops it"
            " (default: the policy's max_revocations).",
        ),
    ] = None,
    max_writes: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Write nothing if a dry pass counts more than this many users to write.",
        ),
    ] = None,
) -> None:
    """Re-apply a range of the input topic to resync CXone."""
    from consumer.progress import ReplayProgress
    from consumer.replay import ReplayRange, parse_offsets, summary_lines
    from consumer.replay import replay as run_replay

    settings = _settings()
    _configure_logging(settings)
    try:
        selection = ReplayRange(
            from_beginning=from_beginning,
            since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
            offsets=parse_offsets(offsets) if offsets else {},
        )
        summary = asyncio.run(
            run_replay(
                settings,
                selection,
                dry_run=dry_run,
                echo=typer.echo,
                max_revocations=max_revocations,
                max_writes=max_writes,
                progress=ReplayProgress(),
            )
        )
    except ConfigurationError as error:
        raise _fail(str(error)) from None
    except KafkaError as error:
        raise _fail(
            f"replay error: cannot read through KAFKA_BOOTSTRAP_SERVERS "
            f"{settings.kafka_bootstrap_servers}: {type(error).__name__}"
        ) from None
    for line in summary_lines(summary):
        typer.echo(line)
    raise typer.Exit(code=int(summary.exit_code))


@app.command()
def demo(
    policy_file: Annotated[Path, typer.Option(help="The policy the demo enforces.")] = Path(
        "examples/policy.yaml"
    ),
    tansu_bin: Annotated[
        str | None, typer.Option(envvar="TANSU_BIN", help="A Tansu broker binary to use.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show the service's logs.")] = False,
) -> None:
    """Run the service on an embedded broker and a CXone simulator, feed samples, summarise."""
    from consumer.demo import run_demo
    from consumer.observability.logging import configure_logging

    configure_logging("INFO" if verbose else "WARNING", "console")
    try:
        asyncio.run(run_demo(policy_file=policy_file, tansu_bin=tansu_bin, echo=typer.echo))
    except ConfigurationError as error:
        raise _fail(str(error)) from None


@app.command()
def sandbox(
    policy_file: Annotated[
        Path, typer.Option(help="The policy file to put in the printed environment.")
    ] = Path("examples/policy.yaml"),
    tansu_bin: Annotated[
        str | None, typer.Option(envvar="TANSU_BIN", help="A Tansu broker binary to use.")
    ] = None,
) -> None:
    """Start the embedded broker and CXone simulator; print the environment for `run`."""
    from consumer.demo import sandbox as start_sandbox
    from consumer.observability.logging import configure_logging

    configure_logging("WARNING", "console")

    async def serve(stop: asyncio.Event) -> None:
        async with start_sandbox(tansu_bin) as box:
            for name, value in box.environment(policy_file.resolve()).items():
                typer.echo(f"export {name}={value}")
            typer.echo(f"# simulator admin API: {box.server.base_url}/_sim/")
            typer.echo("# Ctrl-C stops the sandbox.", err=True)
            await stop.wait()

    run_until_signalled(serve)


@app.command("check-policy")
def check_policy(
    file: Annotated[Path, typer.Argument(help="The policy YAML file to validate.")],
) -> None:
    """Validate a policy file and print its role hierarchy."""
    from consumer.catalog import load_policy, render_hierarchy

    try:
        policy = load_policy(file)
    except ConfigurationError as error:
        raise _fail(str(error)) from None
    typer.echo(render_hierarchy(policy))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
