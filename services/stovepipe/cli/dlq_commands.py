"""``stovepipe dlq list|show|replay``: look at dead letters and send one back.

The broker client and the stage registry are imported inside the commands:
every ``stovepipe`` process (extension servers, client verbs) builds this
command group, and none of them but ``dlq`` needs Kafka to start.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from stovepipe.cli import output

if TYPE_CHECKING:
    from stovepipe.messaging import KafkaSettings
    from stovepipe.runtime.dead_letters import DeadLetter

dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
console = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", envvar="STOVEPIPE_CONFIG", help="stovepipe.yaml")
]


def _settings(config: Path | None) -> KafkaSettings:
    from stovepipe.cli.loading import load_settings
    from stovepipe.runtime.wiring import kafka_settings

    loaded = load_settings(config)
    try:
        return kafka_settings(loaded, "stovepipe-dlq")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _find(letters: list[DeadLetter], topic: str, partition: int, offset: int) -> DeadLetter:
    for letter in letters:
        if (letter.topic, letter.partition, letter.offset) == (topic, partition, offset):
            return letter
    raise typer.BadParameter(f"no dead letter at {topic}[{partition}]@{offset}")


@dlq_app.command("list")
def list_(
    stage: Annotated[list[str] | None, typer.Option(help="Only these stages.")] = None,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """One line per dead letter: where it is, its Request, attempt and reason."""
    from stovepipe.runtime.dead_letters import read_dead_letters

    letters = asyncio.run(read_dead_letters(_settings(config), stage))
    if json_out:
        output.emit_json({"dead_letters": [_letter_dict(letter) for letter in letters]})
        return
    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("topic", "partition", "offset", "request", "attempt", "reason"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            letter.topic,
            str(letter.partition),
            str(letter.offset),
            letter.request_id,
            str(letter.attempt),
            letter.reason,
        )
    console.print(table)


def _letter_dict(letter: DeadLetter) -> dict[str, object]:
    return {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "request_id": letter.request_id,
        "attempt": letter.attempt,
        "reason": letter.reason,
        "payload": str(letter.payload),
    }


@dlq_app.command()
def show(
    topic: str,
    partition: int,
    offset: int,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The decoded payload and headers of one dead letter (redacted)."""
    from stovepipe.runtime.dead_letters import read_dead_letters

    letter = _find(asyncio.run(read_dead_letters(_settings(config))), topic, partition, offset)
    if json_out:
        output.emit_json(_letter_dict(letter))
        return
    console.print(f"{letter.topic}[{letter.partition}]@{letter.offset}")
    console.print(f"  request  {letter.request_id}\n  attempt  {letter.attempt}")
    console.print(f"  reason   {letter.reason}\n  payload  {letter.payload}")


@dlq_app.command()
def replay(topic: str, partition: int, offset: int, config: ConfigOption = None) -> None:
    """Send one dead letter back to its source topic as a fresh attempt."""
    from stovepipe.runtime.dead_letters import read_dead_letters, replay_dead_letter

    settings = _settings(config)
    letter = _find(asyncio.run(read_dead_letters(settings)), topic, partition, offset)
    source = asyncio.run(replay_dead_letter(settings, letter))
    console.print(f"replayed {topic}[{partition}]@{offset} ({letter.request_id}) to {source}")
