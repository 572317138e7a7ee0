"""Malformed, oversized, misaddressed and duplicated messages on every consumed topic.

The product runs as processes on the real broker and PostgreSQL. A foreign
client puts bytes straight on the topics, past every codec, while real heads
are validated. Whatever arrives, the pipeline must keep moving, park what it
cannot read in ``<topic>.dlq.poison``, never fail a Request because of a message
that did not name it, and keep every invariant. Replaying a finished head's
whole message flow must change nothing.
"""

from __future__ import annotations

from collections import Counter

from stovepipe.delays import DEFAULT_TIERS_S, HEADER_NOT_BEFORE, HEADER_TARGET
from stovepipe.delays.tiers import tier_topic
from stovepipe.messaging import dlq, poison
from stovepipe.messaging.codec import DEFAULT_MAX_BYTES
from stovepipe.stages import topics
from stovepipe.testing.fault_checks import assert_true_verdicts, settle, watching
from stovepipe.testing.fault_stack import FaultStack
from stovepipe.v1 import topics_pb2

STAGES = (topics.PROCESS, topics.BUILD, topics.BUILDSIGNAL, topics.RECORD)


def bad_payloads(queue: str, topic: str) -> dict[str, bytes]:
    """What each stage topic is sent: nothing here may be acted upon."""
    missing_ids = {
        topics.PROCESS: topics_pb2.ProcessMessage(request_id=f"request/{queue}/1"),
        topics.BUILD: topics_pb2.BuildMessage(queue=queue),
        topics.BUILDSIGNAL: topics_pb2.BuildSignalMessage(request_id=f"request/{queue}/1"),
        topics.RECORD: topics_pb2.RecordMessage(queue=queue),
    }[topic]
    return {
        "garbage": b"\xff\xfe\x00not a protobuf at all\x13\x37" * 8,
        "empty": b"",
        "oversized": b"\x0a" * (DEFAULT_MAX_BYTES + 1024),
        "missing ids": missing_ids.SerializeToString(),
    }


def unknown_request(queue: str, topic: str) -> bytes:
    """Well formed, naming a Request that does not exist: retried, dead-lettered, ignored."""
    rid = f"request/{queue}/987654"
    message = {
        topics.PROCESS: topics_pb2.ProcessMessage(request_id=rid, queue=queue),
        topics.BUILD: topics_pb2.BuildMessage(request_id=rid, queue=queue),
        topics.BUILDSIGNAL: topics_pb2.BuildSignalMessage(
            build_id="no-such-build", request_id=rid, queue=queue
        ),
        topics.RECORD: topics_pb2.RecordMessage(request_id=rid, queue=queue),
    }[topic]
    return message.SerializeToString()


async def test_bad_messages_on_every_topic_are_parked_and_the_pipeline_goes_on(
    stack: FaultStack,
) -> None:
    assert stack.store is not None
    q0, q1 = stack.queue_names
    async with watching(stack) as watch:
        heads = [await stack.push_and_ingest(q0, green=True)]
        heads.append(await stack.push_and_ingest(q1, green=False))
        expected_poison: Counter[str] = Counter()
        for topic in STAGES:
            for payload in bad_payloads(q0, topic).values():
                await stack.produce_raw(topic, payload, key=b"k")
                expected_poison[topic] += 1
            await stack.produce_raw(topic, unknown_request(q0, topic), key=b"k")
            await stack.produce_raw(dlq(topic), b"\x00\x01garbage dead letter", key=b"k")
            expected_poison[topic] += 1
        due = str(0).encode()
        for tier in DEFAULT_TIERS_S:
            # without a target: dropped (and logged) by the forwarder
            await stack.produce_raw(tier_topic(tier), b"\xffno target", key=b"k")
            # with a target: forwarded, then refused by the stage and parked
            await stack.produce_raw(
                tier_topic(tier),
                b"\xffgarbage via a delay tier",
                key=b"k",
                headers=[
                    (HEADER_TARGET, stack.kafka.topic(topics.PROCESS).encode()),
                    (HEADER_NOT_BEFORE, due),
                ],
            )
            expected_poison[topics.PROCESS] += 1
            # a target outside the pipeline is never written to
            await stack.produce_raw(
                tier_topic(tier),
                b"anything",
                key=b"k",
                headers=[(HEADER_TARGET, b"elsewhere"), (HEADER_NOT_BEFORE, due)],
            )
        await stack.produce_raw(topics.HOOK, b"\xffnot an event", key=b"k")
        heads.append(await stack.push_and_ingest(q0, green=False))
        heads.append(await stack.push_and_ingest(q1, green=True))
        await settle(stack, watch, heads, timeout_s=180)
        await assert_true_verdicts(stack, watch, heads)

        async def all_parked() -> bool:
            for topic, count in expected_poison.items():
                if len(await stack.records(poison(topic))) < count:
                    return False
            return True

        await stack.wait_until(all_parked, 120, "every bad record parked")
        for topic, count in expected_poison.items():
            assert len(await stack.records(poison(topic))) == count, topic
        for topic in STAGES:  # every dead letter was handled by the reconciler
            await stack.wait_until(
                lambda t=topic: stack.consumed(dlq(t), f"reconcile-{t.split('.')[1]}"),
                120,
                f"{dlq(topic)} consumed",
            )
        assert await stack.records("elsewhere") == []
        # nothing was failed closed on behalf of a message that did not name it
        for queue in (q0, q1):
            for request in await stack.store.list_requests(queue, limit=100):
                assert "fail closed" not in request.reason, request
        more = [await stack.push_and_ingest(q0, green=True)]  # still moving afterwards
        await settle(stack, watch, heads + more)
        await assert_true_verdicts(stack, watch, more)
    assert sum(stack.restarts.values()) == 0  # nothing crashed a worker


async def test_replaying_a_finished_flow_changes_nothing(stack: FaultStack) -> None:
    store = stack.store
    assert store is not None
    q0, q1 = stack.queue_names
    async with watching(stack) as watch:
        heads = [
            await stack.push_and_ingest(q0, green=True),
            await stack.push_and_ingest(q0, green=False),
            await stack.push_and_ingest(q1, green=True),
        ]
        await settle(stack, watch, heads)

        async def snapshot() -> object:
            requests = [await store.get_request(h) for h in heads]
            facts = [await store.list_fact_attempts(r.queue, r.uri, "") for r in requests if r]
            queues = [await store.get_queue(q) for q in (q0, q1)]
            return requests, facts, queues

        before = await snapshot()
        triggers = stack.runner_proxy.calls["Trigger"]
        replayed: Counter[str] = Counter()
        for topic in STAGES:
            for record in await stack.records(topic):
                await stack.produce_raw(
                    topic, record.value or b"", key=record.key, headers=list(record.headers)
                )
                replayed[topic] += 1
        for topic in STAGES:
            await stack.wait_until(
                lambda t=topic: stack.consumed(t, t.split(".")[1]), 120, f"{topic} replayed"
            )
        await settle(stack, watch, heads)
        assert await snapshot() == before
        assert stack.runner_proxy.calls["Trigger"] == triggers  # no build started twice
        assert all(replayed[t] > 0 for t in STAGES), replayed
