"""`dlq list` and `dlq redrive`: the dead-letter topic for an operator (see `dead_letters.py`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from consumer.command_io import fail, quiet_kafka_client, read_file
from consumer.errors import ConfigurationError

dlq_app = typer.Typer(
    name="dlq",
    help="Read the dead-letter topic (KAFKA_DLQ_TOPIC); re-drive a record once it is fixed.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@dlq_app.command("list")
def list_dead_letters(
    reason: Annotated[
        str | None,
        typer.Option(metavar="REASON", help="Only this reason: invalid_json, key_mismatch, ..."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One dead letter per line as JSON, headers included.")
    ] = False,
) -> None:
    """One line per dead letter: position, time, reason, key, origin, detail."""
    from consumer.dead_letters import DeadLetterError, letter_json, read_dead_letters, render_line
    from consumer.settings import load_kafka_settings

    try:
        settings = load_kafka_settings()
    except ConfigurationError as error:
        raise fail(str(error)) from None
    quiet_kafka_client()

    async def show() -> int:
        count = 0
        async for letter in read_dead_letters(settings, reason=reason):
            typer.echo(letter_json(letter) if as_json else render_line(letter))
            count += 1
        return count

    try:
        count = asyncio.run(show())
    except ConfigurationError as error:
        raise fail(str(error)) from None
    except DeadLetterError as error:
        raise fail(str(error), code=1) from None
    if not as_json:
        typer.echo(f"{count} dead letters in {settings.kafka_dlq_topic}", err=True)


@dlq_app.command("redrive")
def redrive_dead_letter(
    offset: Annotated[
        str,
        typer.Option(metavar="P:O", help="The dead letter to re-drive: PARTITION:OFFSET."),
    ],
    from_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            allow_dash=True,
            help="The fixed event (JSON; '-' reads stdin) instead of the record as it is.",
        ),
    ] = None,
) -> None:
    """Validate a dead letter (or its fix) as the consumer would, and publish it to the input."""
    from consumer.dead_letters import (
        DeadLetterError,
        fetch_dead_letter,
        parse_position,
        redrive,
        redrive_value,
    )
    from consumer.settings import load_kafka_settings

    try:
        partition, position = parse_position(offset)
        fixed = read_file("--from-file", from_file) if from_file is not None else None
        settings = load_kafka_settings()
    except ConfigurationError as error:
        raise fail(str(error)) from None
    quiet_kafka_client()

    async def run() -> str:
        letter = await fetch_dead_letter(settings, partition, position)
        event, value = redrive_value(
            letter, fixed, max_record_bytes=settings.kafka_max_record_bytes
        )
        done = await redrive(settings, letter, event, value)
        return (
            f"re-drove {settings.kafka_dlq_topic} {partition}:{position} ({letter.reason}) as "
            f"event {event.id} of user {event.user_id} to {settings.kafka_input_topic} "
            f"partition {done.partition} offset {done.offset}; its audit names that record "
            f"(cxone-role-sync audit --user {event.user_id})"
        )

    try:
        typer.echo(asyncio.run(run()))
    except ConfigurationError as error:
        raise fail(str(error)) from None
    except DeadLetterError as error:
        raise fail(str(error), code=1) from None
