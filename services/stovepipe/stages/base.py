"""What every stage handler is built from; the composition root supplies it."""

from __future__ import annotations

from stovepipe.stages.ports import Clock, Extensions, Publisher, QueueDirectory
from stovepipe.storage import Store


class StageBase:
    """Holds the collaborators a stage uses; stages add only what is theirs."""

    def __init__(
        self,
        store: Store,
        queues: QueueDirectory,
        extensions: Extensions,
        publisher: Publisher,
        clock: Clock,
    ) -> None:
        self._store = store
        self._queues = queues
        self._extensions = extensions
        self._publisher = publisher
        self._clock = clock
