"""The pipeline stages: one module per stage, one handler class per module.

ingest (API) -> process -> build -> buildsignal -> record. Each handler takes
one decoded payload, reloads state from storage, advances one entity under
CAS and publishes to the next topic.
"""

from stovepipe.stages import topics
from stovepipe.stages.build import BuildTrigger
from stovepipe.stages.buildsignal import BuildSignalPoller
from stovepipe.stages.ingest import HeadIngester, IngestResult
from stovepipe.stages.process import RequestAdmitter
from stovepipe.stages.record import VerdictRecorder
from stovepipe.stages.revalidate import Revalidation, Revalidator

__all__ = [
    "BuildSignalPoller",
    "BuildTrigger",
    "HeadIngester",
    "IngestResult",
    "RequestAdmitter",
    "Revalidation",
    "Revalidator",
    "VerdictRecorder",
    "topics",
]
