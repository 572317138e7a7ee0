"""buildwatch: hear build ends pushed by the runners and hand them to buildsignal.

Not a Kafka consumer: one ``WatchBuilds`` stream per configured BuildRunner
extension, kept open (reopened with backoff when it breaks). Each notice becomes
a ``BuildSignalMessage`` marked ``pushed`` on ``stovepipe.buildsignal``, keyed by
the build id like every poll of that build, so buildsignal's one idempotent
handler settles the build whichever of push and poll comes first.

Trust: a notice is a hint, never a verdict. It names a build and nothing the
pipeline believes: buildsignal asks the runner's ``Status`` itself, checks the
build against the Build row it stored when it triggered it, and drops a pushed
message it cannot match. A forged or garbled notice costs one ``Status`` call at
most; it cannot change a verdict, start a poll chain or dead-letter a Request.

What the notice carries that is used here is the idempotency key the build
stage made (``<request id>#<attempt>#<project or ->``): it says the Request,
its attempt and the scope without a storage read. A key of another shape (a
build this installation did not trigger) is ignored.

The runner replays nothing: a build that ends while the stream is down is found
by buildsignal's polling, on its slower cadence. A runner that cannot push
(``UNIMPLEMENTED``) is left to polling and not asked again by this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

import grpc

from stovepipe.config import QueueConfig
from stovepipe.domain import RequestId
from stovepipe.domain.errors import InvalidInput
from stovepipe.extensions.buildrunner.client import BuildEnded, BuildRunner
from stovepipe.extensions.buildrunner.tracecontext import continued
from stovepipe.stages import topics
from stovepipe.stages.ports import Publisher
from stovepipe.v1 import topics_pb2, types_pb2

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


def signal_of(notice: BuildEnded) -> topics_pb2.BuildSignalMessage | None:
    """The pushed buildsignal message a notice stands for; None when its key is not ours."""
    parts = notice.idempotency_key.rsplit("#", 2)
    if len(parts) != 3 or not notice.build_id:
        return None
    request_id, attempt, project = parts
    try:
        rid = RequestId.parse(request_id)
        number = int(attempt)
    except (InvalidInput, ValueError):
        return None
    if number < 0:
        return None
    return topics_pb2.BuildSignalMessage(
        build_id=notice.build_id,
        request_id=str(rid),
        queue=rid.queue,
        scope=types_pb2.Scope(project="" if project == "-" else project),
        request_attempt=number,
        pushed=True,
    )


class BuildWatcher:
    """Follows every runner's ``WatchBuilds`` until ``stop`` is set."""

    def __init__(
        self,
        runners: Mapping[str, BuildRunner],
        publisher: Publisher,
        *,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        """``runners`` maps each BuildRunner extension name to its client."""
        self._runners = runners
        self._publisher = publisher
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self.watching: dict[str, bool] = dict.fromkeys(runners, False)
        """Whether the stream of each runner is open right now (for health and tests)."""
        self.forwarded = 0
        """Notices handed to buildsignal by this process."""

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self._follow(name, runner, stop), name=f"buildwatch-{name}")
            for name, runner in self._runners.items()
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _follow(self, name: str, runner: BuildRunner, stop: asyncio.Event) -> None:
        backoff = self._first_backoff_s
        while not stop.is_set():
            try:
                async with runner.watch_builds() as notices:
                    self.watching[name] = True
                    backoff = self._first_backoff_s
                    log.info("watching the builds of runner %s", name)
                    async for notice in notices:
                        await self._forward(name, notice)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                    log.info("runner %s does not push build ends; it is polled", name)
                    return
                log.warning(
                    "the build watch of runner %s broke (%s); reopening in %.1fs",
                    name,
                    exc.code().name,
                    backoff,
                )
            except Exception:
                log.exception("the build watch of runner %s failed", name)
            finally:
                self.watching[name] = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    async def _forward(self, name: str, notice: BuildEnded) -> None:
        message = signal_of(notice)
        if message is None:
            log.debug("runner %s: ignoring the end of %s (not ours)", name, notice.build_id)
            return
        # The notice echoes the trace the build was triggered in: publishing inside it
        # keeps the Request's trace one tree across the push. A failed publish breaks
        # the stream (reopened with backoff); the build's polling settles it meanwhile.
        with continued(notice.trace_context):
            await self._publisher.publish(topics.BUILDSIGNAL, message)
        self.forwarded += 1


def runners_by_name(
    queues: Iterable[QueueConfig], runner_of: Callable[[QueueConfig], BuildRunner]
) -> dict[str, BuildRunner]:
    """One client per BuildRunner extension some Queue uses (the first Queue naming it)."""
    out: dict[str, BuildRunner] = {}
    for queue in queues:
        if queue.build.runner not in out:
            out[queue.build.runner] = runner_of(queue)
    return out
