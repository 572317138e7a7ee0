"""Conversions between the contract's Python values and its protobuf messages.

One place for both directions so the client and the servicer cannot drift.
"""

from __future__ import annotations

from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from stovepipe.ext.v1 import source_control_pb2 as pb
from stovepipe.extensions.sourcecontrol.model import Ancestry, CommitInfo, QueueSource

_ANCESTRY_TO_PB = {
    Ancestry.ANCESTOR: pb.ANCESTRY_ANCESTOR,
    Ancestry.NOT_ANCESTOR: pb.ANCESTRY_NOT_ANCESTOR,
    Ancestry.UNKNOWN: pb.ANCESTRY_UNKNOWN,
}
_ANCESTRY_FROM_PB = {value: key for key, value in _ANCESTRY_TO_PB.items()}


def encode_source(source: QueueSource) -> pb.QueueSource:
    return pb.QueueSource(queue=source.queue, repository=source.repository, ref=source.ref)


def decode_source(message: pb.QueueSource) -> QueueSource:
    return QueueSource(queue=message.queue, repository=message.repository, ref=message.ref)


def encode_ancestry(ancestry: Ancestry) -> pb.Ancestry.ValueType:
    return _ANCESTRY_TO_PB[ancestry]


def decode_ancestry(value: pb.Ancestry.ValueType) -> Ancestry:
    """An unspecified or unknown wire value reads as ``UNKNOWN``: a server that
    cannot say is treated like one that says it cannot tell, which leads core to
    a full build rather than to a wrong incremental one."""
    return _ANCESTRY_FROM_PB.get(value, Ancestry.UNKNOWN)


def encode_commit(info: CommitInfo) -> pb.DescribeCommitResponse:
    when = Timestamp()
    when.FromDatetime(info.time)
    return pb.DescribeCommitResponse(
        commit_time=when,
        author=info.author,
        title=info.title,
        short_name=info.short_name,
        revision=info.revision,
    )


def decode_commit(message: pb.DescribeCommitResponse) -> CommitInfo:
    return CommitInfo(
        time=message.commit_time.ToDatetime(tzinfo=UTC),
        author=message.author,
        title=message.title,
        short_name=message.short_name,
        revision=message.revision,
    )
