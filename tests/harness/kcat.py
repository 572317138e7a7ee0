"""Reading a topic with ``kcat`` (Debian's package), the way a team outside Stovepipe would.

Against the embedded Tansu broker kcat needs two settings, both about the
protocol handshake, not about the records:

- ``api.version.request=false`` with ``broker.version.fallback=0.9.0``:
  librdkafka 2.0.2 (Debian 12) asks for ApiVersions v3 first and cannot parse
  Tansu's answer — Tansu writes every tagged field of the v3 response
  (SupportedFeatures, FinalizedFeaturesEpoch = -1, FinalizedFeatures,
  ZkMigrationReady), legal but unusual (Apache Kafka leaves out fields at
  their defaults), and librdkafka 2.0.2 loses its place in that section: it
  fails with a read underflow at byte 274 of 279, taking the epoch's 0xff
  bytes for a length. ``0.9.0`` is the only
  fallback that makes librdkafka skip the ApiVersions request altogether
  (any value ``>= 0.10`` sends it again).
- an absolute start offset (``-o 0``), not ``-o beginning``: resolving a
  logical offset sends ListOffsets v0, and Tansu's v0 answer lacks the
  ``old_style_offsets`` array librdkafka reads.

Fetch then works at the old versions, and Tansu returns v2 record batches,
whose headers (the CloudEvent's ``ce_*`` attributes) librdkafka reads. Against
an external Apache Kafka none of this is needed (nor wanted: old fetch
versions would down-convert and drop headers), so it is used for Tansu only.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass

import pytest

TANSU_SETTINGS = ("-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0")


@dataclass(frozen=True)
class KcatRecord:
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    payload: str


def kcat_binary() -> str:
    """The kcat executable, or the test fails saying how to install it."""
    found = shutil.which("kcat")
    if found is None:
        pytest.fail(
            "kcat is not installed: `apt-get install kcat` (Debian's package; "
            "`.ci/run` installs it when run as root)",
            pytrace=False,
        )
    return found


async def kcat_read(
    bootstrap: str, topic: str, *, tansu: bool, timeout_s: float = 60
) -> list[KcatRecord]:
    """Every record of ``topic`` from offset 0 to its end, read by kcat (``-J``)."""
    argv = [
        kcat_binary(),
        *(TANSU_SETTINGS if tansu else ()),
        "-b",
        bootstrap,
        "-C",
        "-t",
        topic,
        "-o",
        "0",
        "-e",
        "-J",
        "-q",
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"kcat did not reach the end of {topic} within {timeout_s} s", pytrace=False)
    if process.returncode != 0:
        pytest.fail(f"kcat exited {process.returncode}: {err.decode()[-2000:]}", pytrace=False)
    records = []
    for line in out.decode().splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        flat = raw.get("headers") or []
        records.append(
            KcatRecord(
                partition=raw["partition"],
                offset=raw["offset"],
                key=raw.get("key"),
                headers=dict(zip(flat[0::2], flat[1::2], strict=True)),
                payload=raw["payload"],
            )
        )
    return sorted(records, key=lambda r: (r.partition, r.offset))
