"""Malformed, oversized, misaddressed and duplicated records on every topic.

The product runs as a process tree on the real broker and PostgreSQL
(:class:`FaultStack`). A foreign client puts records straight on the topics,
past every codec, on every partition, while real heads are being validated:
garbage, empty values, tombstones, another topic's payload (labelled and not),
payloads without their ids, Requests that do not exist, payloads just over
``max_message_bytes`` and payloads over the transport limit. It does so on the
stage topics, on ``analyze`` and ``hook``, on every delay tier and on the
dead-letter topics the reconciler consumes.

Each record carries a probe header, so the suite can follow it through
``<topic>.dlq`` and ``<topic>.dlq.poison`` (read back with a consumer) and find
the log lines that name its topic, partition and offset. One storm is injected
per class and checked per topic, so a failure names the topic.

Afterwards the real heads must all have their true verdict, no Request may be
failed closed because of a record that did not name it, no worker may have
crashed, and the invariants of :class:`InvariantWatch` must hold. The second
class replays every record of a finished flow, topic by topic, and checks that
nothing in storage moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from harness.chaos_proxy import Fault
from harness.fault_checks import (
    InvariantWatch,
    assert_true_verdicts,
    settle,
    watching,
)
from harness.fault_stack import FaultStack, fault_stack
from harness.postgres import PostgresCluster
from stovepipe.config import load_config
from stovepipe.delays import DEFAULT_TIERS_S, HEADER_NOT_BEFORE, HEADER_TARGET, DelayForwarder
from stovepipe.delays.tiers import tier_topic
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.hooks.events import BECAME_GREEN, VERDICT_RECORDED
from stovepipe.messaging import HOOK as HOOK_SPEC
from stovepipe.messaging import PIPELINE_TOPICS, dlq, poison
from stovepipe.messaging.broker import transport_limit
from stovepipe.messaging.codec import payload_type_name
from stovepipe.messaging.headers import ATTEMPT, FAILURE_REASON, PAYLOAD_TYPE
from stovepipe.runtime.delay_worker import run_delay_forwarder
from stovepipe.runtime.registry import PIPELINE as PIPELINE_STAGES
from stovepipe.runtime.registry import RECONCILE_GROUP, STAGES
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import topics_pb2, types_pb2

PROBE = "x-test-probe"
ORIGINS = {
    FactOrigin.BUILD: types_pb2.FACT_ORIGIN_BUILD,
    FactOrigin.FAIL_CLOSED: types_pb2.FACT_ORIGIN_FAIL_CLOSED,
}
STAGE_TOPICS = tuple(topic for stage in PIPELINE_STAGES for topic in stage.consumes)
STAGE_OF = {topic.name: stage.name for stage in PIPELINE_STAGES for topic in stage.consumes}
"""Logical stage topic -> the worker (and consumer group) that consumes it."""
PROCESS, BUILD, BUILDSIGNAL, RECORD, ANALYZE, HOOK = (t.name for t in PIPELINE_TOPICS)
TIERS = {tier_topic(t): t for t in DEFAULT_TIERS_S}
SHORT_TIERS = [name for name, seconds in TIERS.items() if seconds <= 5]
"""Tiers short enough to wait out here: a record due in the far future must not
hold up the records behind it for longer than its tier's delay."""
DEAD_LETTERS = [dlq(t.name) for t in STAGE_TOPICS]
FAR_FUTURE_MS = b"99999999999999"
TIMEOUT_S = 90.0

# What the design says becomes of a bad record.
PARKED = "parked"  # dead-lettered (on a stage topic), then parked in <source>.dlq.poison
SETTLED = "settled"  # reaches a dead letter (or is one) that the reconciler logs and acknowledges
DROPPED = "dropped"  # a delay-tier record the forwarder cannot deliver: logged, written nowhere
KEPT = "kept"  # a topic no stage consumes, or a readable event: nothing moves it
PARKED_BY_READERS = "parked by readers"  # unreadable on the event topic: each reader parks it
EVENT_READERS = tuple(s.name for s in STAGES if HOOK_SPEC in s.consumes)
"""The stages that read the event topic, each in its own consumer group."""


@dataclass(frozen=True)
class Probe:
    """One record put on a topic by the test, and what must become of it."""

    id: str
    kind: str
    topic: str  # logical topic it was produced to
    partition: int
    offset: int
    value: bytes | None
    fate: str
    source: str  # the stage topic whose dlq / poison it ends up in (PARKED, SETTLED)
    logged: str = ""  # what the reconciler must log about it, when it settles it

    def expected(self) -> Counter[str]:
        """How often it must appear in each dead-letter and poison topic, and nowhere else."""
        where = Counter({self.topic: 1}) if self.topic in SCANNED else Counter()
        if self.fate in (PARKED, SETTLED) and self.topic not in SCANNED:
            where[dlq(self.source)] += 1  # dead-lettered by its stage
        if self.fate == PARKED:
            where[poison(self.source)] += 1
        if self.fate == PARKED_BY_READERS:
            where[poison(self.topic)] += len(EVENT_READERS)
        return where


class Prober:
    """A foreign producer: any bytes, any headers, any partition, no codec."""

    def __init__(self, stack: FaultStack) -> None:
        self.stack = stack
        self.probes: list[Probe] = []
        self._producer = AIOKafkaProducer(
            bootstrap_servers=stack.broker.bootstrap_servers,
            max_request_size=8 * 1024 * 1024,
            enable_idempotence=False,
            acks="all",
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        kind: str,
        fate: str,
        partition: int,
        source: str = "",
        key: bytes | None = b"probe",
        headers: list[tuple[str, bytes]] | None = None,
        logged: str = "",
    ) -> Probe:
        probe_id = f"{kind}:{uuid.uuid4().hex[:10]}"
        sent = await self._producer.send_and_wait(
            self.stack.kafka.topic(topic),
            value,
            key=key,
            partition=partition,
            headers=[*(headers or []), (PROBE, probe_id.encode())],
        )
        probe = Probe(
            probe_id,
            kind,
            topic,
            sent.partition,
            sent.offset,
            value,
            fate,
            source,
            logged,
        )
        self.probes.append(probe)
        return probe


def labelled(message: Message) -> list[tuple[str, bytes]]:
    return [(PAYLOAD_TYPE, payload_type_name(type(message)).encode())]


def payload(topic: str, request_id: str, queue: str) -> Message:
    """A complete, well-formed payload of ``topic`` naming ``request_id``."""
    if topic == PROCESS:
        return topics_pb2.ProcessMessage(request_id=request_id, queue=queue)
    if topic == BUILD:
        return topics_pb2.BuildMessage(request_id=request_id, queue=queue)
    if topic == BUILDSIGNAL:
        return topics_pb2.BuildSignalMessage(
            build_id=f"build-of-{request_id}", request_id=request_id, queue=queue
        )
    if topic == ANALYZE:
        return topics_pb2.AnalyzeMessage(request_id=request_id, queue=queue)
    return topics_pb2.RecordMessage(request_id=request_id, queue=queue)


def without_ids(topic: str, request_id: str) -> Message:
    """The topic's own type naming a real Request but lacking its queue."""
    return payload(topic, request_id, "")


def another_type(topic: str, request_id: str, queue: str) -> Message:
    """Another topic's payload naming a real Request; on the wire it may be identical."""
    other = RECORD if topic != RECORD else BUILD
    return payload(other, request_id, queue)


async def bad_stage_records(
    prober: Prober, topic: str, partition: int, victim: str, queue: str, huge: bytes, over: bytes
) -> None:
    """Everything a stage topic (or its dead-letter topic) is fed on one partition.

    ``victim`` is a real Request in flight: records that name it without being
    valid must not fail it.
    """
    source = topic.removesuffix(".dlq")
    is_dlq = topic.endswith(".dlq")
    send = prober.send
    key = queue.encode() if source == PROCESS else victim.encode()
    common: dict[str, Any] = {"partition": partition, "source": source, "key": key}
    await send(topic, b"\xff\xfe\x00 not a protobuf \x13\x37" * 4, kind="garbage", fate=PARKED,
               **common)  # fmt: skip
    await send(topic, b"", kind="empty", fate=PARKED, **common)
    await send(topic, None, kind="tombstone", fate=PARKED, **common)
    await send(topic, Timestamp(seconds=1, nanos=2).SerializeToString(),
               kind="unlabelled-other-type", fate=PARKED, **common)  # fmt: skip
    wrong = another_type(source, victim, queue)
    await send(topic, wrong.SerializeToString(), kind="labelled-other-type", fate=PARKED,
               headers=labelled(wrong), **common)  # fmt: skip
    lacking = without_ids(source, victim)
    await send(topic, lacking.SerializeToString(), kind="missing-ids", fate=PARKED,
               headers=labelled(lacking), **common)  # fmt: skip
    await send(topic, over, kind="just-over-max", fate=PARKED, **common)
    await send(topic, huge, kind="over-transport-limit", fate=PARKED, **common)
    unknown = f"request/{queue}/{90000 + len(prober.probes)}"
    known_not = payload(source, unknown, queue)
    # attempt 9 of 10: one retry through a delay tier, then the dead letter
    await send(topic, known_not.SerializeToString(), kind="unknown-request", fate=SETTLED,
               headers=[*labelled(known_not), (ATTEMPT, b"9")],
               logged=f"unknown request {unknown!r}", **common)  # fmt: skip
    if is_dlq:
        other_queue = next(q for q in prober.stack.queue_names if q != queue)
        misaddressed = payload(source, victim, other_queue)
        await send(topic, misaddressed.SerializeToString(), kind="misaddressed", fate=SETTLED,
                   headers=labelled(misaddressed),
                   logged=f"dead letter names {victim} under queue {other_queue!r}",
                   **common)  # fmt: skip


async def bad_tier_records(prober: Prober, tier: str, partition: int, huge: bytes) -> None:
    """What a delay tier is fed on one partition."""
    stack = prober.stack
    process = stack.kafka.topic(PROCESS).encode()
    now = str(int(time.time() * 1000)).encode()
    send = prober.send
    common: dict[str, Any] = {"partition": partition}
    if tier in SHORT_TIERS:  # first, so that everything behind it waits on it
        await send(tier, b"\xfffar future", kind="far-future", fate=PARKED, source=PROCESS,
                   headers=[(HEADER_TARGET, process), (HEADER_NOT_BEFORE, FAR_FUTURE_MS)],
                   **common)  # fmt: skip
    await send(tier, b"\xffno target", kind="no-target", fate=DROPPED, **common)
    await send(tier, b"\xffgarbage via a tier", kind="to-process", fate=PARKED, source=PROCESS,
               headers=[(HEADER_TARGET, process), (HEADER_NOT_BEFORE, now)], **common)  # fmt: skip
    await send(tier, b"\xffnot a number", kind="bad-not-before", fate=PARKED, source=PROCESS,
               headers=[(HEADER_TARGET, process), (HEADER_NOT_BEFORE, b"soon\xff")],
               **common)  # fmt: skip
    for outside in (stack.kafka.topic("elsewhere"), stack.kafka.topic(dlq(PROCESS))):
        await send(tier, b"anything", kind="target-outside", fate=DROPPED,
                   headers=[(HEADER_TARGET, outside.encode()), (HEADER_NOT_BEFORE, now)],
                   **common)  # fmt: skip
    await send(tier, huge, kind="over-transport-limit", fate=DROPPED,
               headers=[(HEADER_TARGET, process), (HEADER_NOT_BEFORE, now)], **common)  # fmt: skip


async def bad_event_records(prober: Prober, topic: str, partition: int, huge: bytes) -> None:
    """``hook``: every reader of the event topic (the hooks dispatcher, the upstream
    trigger) parks what it cannot read, for an operator, and moves nothing else."""
    send = prober.send
    common: dict[str, Any] = {"partition": partition, "fate": PARKED_BY_READERS}
    await send(topic, b"\xff\xfe garbage", kind="garbage", **common)
    await send(topic, b"", kind="empty", **common)
    await send(topic, None, kind="tombstone", **common)
    wrong = topics_pb2.ProcessMessage(request_id="request/fault/q0/1", queue="fault/q0")
    await send(topic, wrong.SerializeToString(), kind="labelled-other-type",
               headers=labelled(wrong), **common)  # fmt: skip
    event = topics_pb2.HookEvent(id="no-data")
    await send(topic, event.SerializeToString(), kind="missing-ids", headers=labelled(event),
               **common)  # fmt: skip
    await send(topic, huge, kind="over-transport-limit", **common)


class EventWatch:
    """``WatchEvents`` from the API, as an operator's dashboard would follow it."""

    def __init__(self, stack: FaultStack) -> None:
        self.stack = stack
        self.events: list[topics_pb2.HookEvent] = []
        self._call = stack.stub.WatchEvents(pb.WatchEventsRequest())
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for response in self._call:
                if response.HasField("event"):  # the first response only says "ready"
                    self.events.append(response.event)

    async def recorded_fact(self, request_id: str) -> ValidationFact:
        """The fact of a real head, once record has written it."""
        store = self.stack.store
        assert store is not None
        found: list[ValidationFact] = []

        async def recorded() -> bool:
            request = await store.get_request(request_id)
            fact = await store.get_fact(request.queue, request.uri, "") if request else None
            if fact is not None:
                found.append(fact)
            return fact is not None

        await until(recorded, what=f"the fact of {request_id}", timeout_s=TIMEOUT_S)
        return found[-1]

    async def sentinel(self, prober: Prober, fact: ValidationFact) -> str:
        """Publish an event that storage confirms until the watch delivers it; return its id.

        The feed serves only events that agree with a stored fact, so the sentinel
        restates a real fact under an id of its own."""
        event_id = f"sentinel-{uuid.uuid4().hex[:8]}"
        event = topics_pb2.HookEvent(
            id=event_id,
            source="test",
            type=VERDICT_RECORDED,
            subject=fact.queue,
            data=topics_pb2.GreennessEventData(
                request_id=fact.request_id,
                queue=fact.queue,
                uri=fact.uri,
                degree=fact.degree,
                green=fact.green,
                origin=ORIGINS[fact.origin],
                attempt=fact.attempt,
            ),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await prober.send(HOOK, event.SerializeToString(), kind="sentinel", fate=KEPT,
                              partition=0, headers=labelled(event))  # fmt: skip
            for _ in range(10):
                if any(e.id == event_id for e in self.events):
                    return event_id
                await asyncio.sleep(0.1)
        raise AssertionError("WatchEvents never delivered a well-formed event")

    async def close(self) -> None:
        self._call.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass
class Storm:
    stack: FaultStack
    watch: InvariantWatch
    prober: Prober
    events: EventWatch
    heads: list[str]
    closing_sentinel: str = ""


SCANNED = [
    *(dlq(t.name) for t in PIPELINE_TOPICS),
    *(poison(t.name) for t in PIPELINE_TOPICS),
    "elsewhere",
]
"""Where a bad record could end up; ``elsewhere`` is a target outside the pipeline."""


@dataclass
class Scan:
    records: dict[str, list[ConsumerRecord[bytes, bytes]]]

    def where(self, probe_id: str) -> Counter[str]:
        """How often the probe sits in each scanned topic."""
        return Counter(
            topic
            for topic, records in self.records.items()
            for record in records
            if header(record, PROBE) == probe_id
        )


async def scan(stack: FaultStack, topics: list[str] = SCANNED) -> Scan:
    """Every record of ``topics`` so far, read by one consumer outside any group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        logical = {stack.kafka.topic(t): t for t in topics}
        partitions = [TopicPartition(t, p) for t in logical for p in range(stack.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: dict[str, list[ConsumerRecord[bytes, bytes]]] = {t: [] for t in topics}
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                found[logical[tp.topic]] += [r for r in records if r.offset < ends[tp]]
        return Scan(found)
    finally:
        await consumer.stop()


CONSUMED_BY = {
    **{t.name: STAGE_OF[t.name] for t in STAGE_TOPICS},
    **{dlq(t.name): RECONCILE_GROUP for t in STAGE_TOPICS},
    **dict.fromkeys(TIERS, "delay"),
    HOOK: EVENT_READERS[0],
}
"""Every topic a worker consumes, and its consumer group."""


async def behind(stack: FaultStack, topics: list[str] | None = None) -> list[str]:
    """The consumed partitions whose group has not yet committed past their last record."""
    wanted = topics or list(CONSUMED_BY)
    bootstrap = stack.broker.bootstrap_servers
    ends_reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await ends_reader.start()
    try:
        partitions = [
            TopicPartition(stack.kafka.topic(t), p) for t in wanted for p in range(stack.partitions)
        ]
        ends = await ends_reader.end_offsets(partitions)
    finally:
        await ends_reader.stop()
    lagging = []
    for group in sorted({CONSUMED_BY[t] for t in wanted}):
        # a consumer that never subscribes only reads the group's committed offsets
        reader = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=stack.kafka.group(group),
            enable_auto_commit=False,
        )
        await reader.start()
        try:
            for tp in partitions:
                if CONSUMED_BY[tp.topic.removeprefix(stack.topic_prefix)] == group:
                    done = await reader.committed(tp) or 0
                    if done < ends[tp]:
                        lagging.append(f"{tp.topic}[{tp.partition}] {done}/{ends[tp]}")
        finally:
            await reader.stop()
    return lagging


async def quiescent(stack: FaultStack, timeout_s: float = TIMEOUT_S) -> None:
    """Every consumed record handled, twice in a row (a forward may land in between)."""
    calm = 0
    deadline = time.monotonic() + timeout_s
    while calm < 2:
        lagging = await behind(stack)
        calm = 0 if lagging else calm + 1
        if time.monotonic() > deadline:
            raise AssertionError(f"still behind after {timeout_s:.0f}s: {lagging}")
        await asyncio.sleep(0.3)


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value or b"").decode("utf-8", "replace")
    return ""


def log_of(stack: FaultStack, child: str) -> str:
    return stack.children[child].log_path.read_text(errors="replace")


async def no_fail_closed(stack: FaultStack) -> None:
    """No Request was failed closed: every record that named one was refused unread."""
    assert stack.store is not None
    for queue in stack.queue_names:
        for request in await stack.store.list_requests(queue, limit=200):
            assert "fail closed" not in request.reason, request


@pytest.fixture(scope="class")
async def storm(
    tmp_path_factory: pytest.TempPathFactory, fault_postgres: PostgresCluster, fault_template: str
) -> AsyncIterator[Storm]:
    """Real heads, and bad records on every topic and partition between them."""
    root: Path = tmp_path_factory.mktemp("storm")
    async with (
        fault_stack(root, fault_postgres, template=fault_template) as stack,
        watching(stack) as watch,
        contextlib.AsyncExitStack() as cleanup,
    ):
        prober = Prober(stack)
        await prober.start()
        cleanup.push_async_callback(prober.stop)
        events = EventWatch(stack)
        cleanup.push_async_callback(events.close)
        storm = Storm(stack, watch, prober, events, [])
        q0, q1 = stack.queue_names
        limit = transport_limit(stack.kafka)
        huge = b"\x0a" * (limit + 256 * 1024)
        over = b"\x0a" * (stack.kafka.max_message_bytes + 1024)
        storm.heads.append(await stack.push_and_ingest(q0, green=True))
        known = await events.recorded_fact(storm.heads[0])
        await events.sentinel(prober, known)  # the watch is live: what follows is seen
        storm.heads.append(await stack.push_and_ingest(q1, green=False))
        broken = await events.recorded_fact(storm.heads[1])
        forged = topics_pb2.HookEvent(
            id=f"forged-{uuid.uuid4().hex[:8]}",
            subject=broken.queue,
            type=BECAME_GREEN,
            data=topics_pb2.GreennessEventData(
                request_id=broken.request_id, queue=broken.queue, uri=broken.uri,
                degree=0.0, green=True, origin=types_pb2.FACT_ORIGIN_BUILD, attempt=1,
            ),
        )  # fmt: skip
        await prober.send(HOOK, forged.SerializeToString(), kind="forged-green", fate=KEPT,
                          partition=0, headers=labelled(forged))  # fmt: skip
        victim = storm.heads[0]
        for partition in range(stack.partitions):
            for spec in STAGE_TOPICS:
                await bad_stage_records(prober, spec.name, partition, victim, q0, huge, over)
        storm.heads.append(await stack.push_and_ingest(q0, green=False))
        for partition in range(stack.partitions):
            for tier in TIERS:
                await bad_tier_records(prober, tier, partition, huge)
            for topic in DEAD_LETTERS:
                await bad_stage_records(prober, topic, partition, victim, q0, huge, over)
        storm.heads.append(await stack.push_and_ingest(q1, green=True))
        for partition in range(stack.partitions):
            await bad_event_records(prober, HOOK, partition, huge)
        storm.closing_sentinel = await events.sentinel(prober, known)
        storm.heads.append(await stack.push_and_ingest(q0, green=True))
        yield storm


def storm_topics() -> list[str]:
    return [*(t.name for t in STAGE_TOPICS), HOOK, *TIERS, *DEAD_LETTERS]


class TestBadRecordsOnEveryTopic:
    async def test_real_heads_reach_their_true_verdicts(self, storm: Storm) -> None:
        await settle(storm.stack, storm.watch, storm.heads, timeout_s=TIMEOUT_S)
        await assert_true_verdicts(storm.stack, storm.watch, storm.heads)
        await no_fail_closed(storm.stack)

    async def test_a_client_with_default_limits_is_refused_at_once(self, storm: Storm) -> None:
        """Over the producer's limit: a clear error before anything is sent, not a hang."""
        producer = AIOKafkaProducer(
            bootstrap_servers=storm.stack.broker.bootstrap_servers, enable_idempotence=False
        )
        await producer.start()
        try:
            started = time.monotonic()
            with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
                await asyncio.wait_for(
                    producer.send_and_wait(
                        storm.stack.kafka.topic(PROCESS), b"\x0a" * (2 * 1024 * 1024), key=b"k"
                    ),
                    10,
                )
            assert time.monotonic() - started < 2
        finally:
            await producer.stop()

    async def test_a_forwarder_that_dies_takes_its_process_down(
        self, storm: Storm, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A delay worker whose forwarder died must exit (its supervisor restarts it), not
        live on forwarding nothing until someone stops it."""

        async def dies(self: DelayForwarder) -> None:
            raise RuntimeError("the forwarder died")

        monkeypatch.setattr(DelayForwarder, "run", dies)
        config = load_config(storm.stack.root / "stovepipe.yaml")
        with pytest.raises(RuntimeError, match="the forwarder died"):
            await asyncio.wait_for(run_delay_forwarder(config, asyncio.Event()), 30)

    @pytest.mark.parametrize("topic", storm_topics())
    async def test_bad_records_end_up_where_the_design_says(self, storm: Storm, topic: str) -> None:
        stack = storm.stack
        probes = [p for p in storm.prober.probes if p.topic == topic and p.kind != "sentinel"]
        assert probes, topic

        async def arrived() -> bool:
            found = await scan(stack)
            return all(found.where(p.id) >= p.expected() for p in probes)

        await until(
            arrived,
            what=f"{topic}: every bad record where it belongs",
            timeout_s=TIMEOUT_S,
            interval_s=0.3,
        )
        if topic in CONSUMED_BY:

            async def handled() -> bool:
                return not await behind(stack, [topic])

            await until(
                handled,
                what=f"{topic} handled by {CONSUMED_BY[topic]}",
                timeout_s=TIMEOUT_S,
                interval_s=0.3,
            )
        found = await scan(stack)
        for probe in probes:  # exactly where it belongs, once, and nowhere else
            assert found.where(probe.id) == probe.expected(), probe
        if topic not in CONSUMED_BY:  # nobody consumes it: every record stays as it was
            here = (await scan(stack, [topic])).records[topic]
            for probe in probes:
                (kept,) = [r for r in here if header(r, PROBE) == probe.id]
                assert (kept.partition, kept.offset, kept.value) == (
                    probe.partition,
                    probe.offset,
                    probe.value,
                ), probe
        self._check_logs(storm, topic, probes, found)
        await no_fail_closed(stack)

    def _check_logs(self, storm: Storm, topic: str, probes: list[Probe], found: Scan) -> None:
        """Each refusal is logged with the record's topic, partition and offset."""
        stack = storm.stack
        physical = stack.kafka.topic(topic)
        reconcile = log_of(stack, "worker-reconcile")
        if topic in STAGE_OF:
            stage_log = log_of(stack, f"worker-{STAGE_OF[topic]}")
            for probe in probes:
                assert f"handler failed on {physical}[{probe.partition}]@{probe.offset}" in (
                    stage_log
                ), probe
        if topic in TIERS:
            forwarder = log_of(stack, "worker-delay")
            for probe in probes:
                if probe.fate == DROPPED:
                    where = f"topic={physical} partition={probe.partition} offset={probe.offset}"
                    assert where in forwarder, probe
        for probe in probes:
            assert probe.logged in reconcile, probe
        parked_from_here = [p for p in probes if p.fate == PARKED and p.source]
        if not parked_from_here:
            return
        for probe in parked_from_here:
            letters = found.records[dlq(probe.source)]
            (letter,) = [r for r in letters if header(r, PROBE) == probe.id]
            where = (
                f"poison dead letter parked: topic={letter.topic} "
                f"partition={letter.partition} offset={letter.offset}"
            )
            assert where in reconcile, probe
            assert header(letter, FAILURE_REASON) or letter.topic.endswith(".dlq"), probe
            (parked,) = [
                r for r in found.records[poison(probe.source)] if header(r, PROBE) == probe.id
            ]
            assert header(parked, FAILURE_REASON), probe
            if probe.kind == "over-transport-limit":  # too big to produce: parked without it
                assert parked.value == b"", probe
                assert header(parked, "stovepipe-dropped-value-bytes") == str(
                    len(probe.value or b"")
                )
            else:
                assert (parked.value or b"") == (probe.value or b""), probe

    async def test_event_subscribers_see_only_events(self, storm: Storm) -> None:
        """Bad records on ``hook`` never reach a ``WatchEvents`` stream."""
        closing = storm.closing_sentinel

        async def closed() -> bool:
            return any(e.id == closing for e in storm.events.events)

        await until(closed, what="the closing sentinel", timeout_s=TIMEOUT_S, interval_s=0.3)
        await settle(storm.stack, storm.watch, storm.heads, timeout_s=TIMEOUT_S)
        real = set(storm.heads)
        store = storm.stack.store
        assert store is not None
        for event in storm.events.events:
            assert not event.id.startswith("forged-"), event
            sentinel = event.id.startswith("sentinel-")
            assert sentinel or (event.id and event.data.request_id in real), event
            fact = await store.get_fact(event.data.queue, event.data.uri, "")
            assert fact is not None and event.data.green == fact.green, event

    async def test_the_pipeline_keeps_going_and_nothing_crashed(self, storm: Storm) -> None:
        stack = storm.stack
        more = [
            await stack.push_and_ingest(stack.queue_names[0], green=False),
            await stack.push_and_ingest(stack.queue_names[1], green=True),
        ]
        await settle(stack, storm.watch, storm.heads + more, timeout_s=TIMEOUT_S)
        await assert_true_verdicts(stack, storm.watch, storm.heads + more)
        await no_fail_closed(stack)
        assert sum(stack.restarts.values()) == 0, stack.restarts
        assert all(child.alive for child in stack.children.values())


# Duplicate delivery


@dataclass
class Finished:
    """A stack whose heads have all settled, and what storage said then."""

    stack: FaultStack
    watch: InvariantWatch
    heads: list[str]
    fail_closed: str
    before: dict[str, Any]


async def snapshot(stack: FaultStack) -> dict[str, Any]:
    """Everything a duplicate must not change: Requests, facts, builds, Queue rows, refs."""
    store = stack.store
    assert store is not None
    requests = [r for q in stack.queue_names for r in await store.list_requests(q, limit=100)]
    return {
        "requests": requests,
        "facts": [await store.list_fact_attempts(r.queue, r.uri, "") for r in requests],
        "builds": [await store.get_build(r.queue, r.build_id) for r in requests if r.build_id],
        "queues": [await store.get_queue(q) for q in stack.queue_names],
        "refs": [stack.repos[q].ref("verified-main") for q in stack.queue_names],
        "triggers": stack.runner_proxy.calls["Trigger"],
    }


@pytest.fixture(scope="class")
async def finished(
    tmp_path_factory: pytest.TempPathFactory, fault_postgres: PostgresCluster, fault_template: str
) -> AsyncIterator[Finished]:
    """Green, broken and fail-closed heads, all settled, every topic quiet."""
    root: Path = tmp_path_factory.mktemp("replay")
    async with (
        fault_stack(root, fault_postgres, template=fault_template) as stack,
        watching(stack) as watch,
    ):
        assert stack.store is not None
        q0, q1 = stack.queue_names
        heads = [
            await stack.push_and_ingest(q0, green=True),
            await stack.push_and_ingest(q1, green=True),
            await stack.push_and_ingest(q0, green=False),
        ]
        await settle(stack, watch, heads, timeout_s=TIMEOUT_S)
        stack.runner_proxy.set_fault("Trigger", Fault.NOT_FOUND)  # permanent: dead-lettered
        closed = await stack.push_and_ingest(q1, green=True)

        async def failed_closed() -> bool:
            request = await stack.store.get_request(closed) if stack.store else None
            return request is not None and request.terminal

        await until(failed_closed, what="the fail-closed head", timeout_s=TIMEOUT_S, interval_s=0.3)
        stack.runner_proxy.clear("Trigger")
        heads += [closed, await stack.push_and_ingest(q1, green=False)]
        await settle(stack, watch, heads, timeout_s=TIMEOUT_S)
        await quiescent(stack)
        yield Finished(stack, watch, heads, closed, await snapshot(stack))


REPLAYED = [
    *(t.name for t in STAGE_TOPICS if t.name != ANALYZE),  # no projects here: analyze is idle
    HOOK,
    tier_topic(DEFAULT_TIERS_S[0]),  # build status polls
    dlq(BUILD),  # the fail-closed head
]


class TestEveryRecordDeliveredTwice:
    async def test_the_flow_settled_as_expected(self, finished: Finished) -> None:
        stack = finished.stack
        verdicts = await finished.watch.verdicts(finished.heads)
        assert verdicts[finished.fail_closed] == (False, "fail_closed")
        others = [h for h in finished.heads if h != finished.fail_closed]
        await assert_true_verdicts(stack, finished.watch, others)
        assert all(q.in_flight_count == 0 for q in finished.before["queues"])

    @pytest.mark.parametrize("topic", REPLAYED)
    async def test_replaying_a_topic_changes_nothing(self, finished: Finished, topic: str) -> None:
        stack = finished.stack
        before = await scan(stack)
        records = (await scan(stack, [topic])).records[topic]
        assert records, f"{topic} carried nothing in this flow"
        prober = Prober(stack)
        await prober.start()
        try:
            for record in records:
                await prober.send(
                    topic,
                    record.value,
                    kind="replay",
                    fate=KEPT,
                    partition=record.partition,
                    key=record.key,
                    headers=[(k, bytes(v or b"")) for k, v in record.headers or ()],
                )
        finally:
            await prober.stop()
        await quiescent(stack)
        await settle(stack, finished.watch, finished.heads, timeout_s=TIMEOUT_S)
        assert await snapshot(stack) == finished.before, topic
        after = await scan(stack)
        grown = {
            t: len(after.records[t]) - len(before.records[t])
            for t in SCANNED
            if len(after.records[t]) != len(before.records[t])
        }
        # nothing dead-lettered or parked because of a duplicate (but the replay itself)
        assert grown == ({topic: len(records)} if topic in SCANNED else {}), grown
        assert sum(stack.restarts.values()) == 0, stack.restarts
