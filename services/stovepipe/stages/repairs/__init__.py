"""The sweeper's repairs: each mends one kind of work a lost message left behind.

Storage knows what is unfinished even when the broker forgot every message;
each repair turns one kind of that knowledge back into messages (or, for the
promotion ref, into the call that was lost). ``stovepipe.stages.sweep``
composes them into one pass.

- :class:`UnfinishedRequestRedriver`: non-terminal Requests that stopped moving.
- :class:`LostVerdictRerecorder`: settled Requests whose verdict never landed.
- :class:`PromotionRefRepair`: promotion refs left behind the bookmark.
"""

from stovepipe.stages.repairs.base import Repair, SweepPass
from stovepipe.stages.repairs.promotion import PromotionRefRepair
from stovepipe.stages.repairs.redrive import UnfinishedRequestRedriver
from stovepipe.stages.repairs.rerecord import LostVerdictRerecorder

__all__ = [
    "LostVerdictRerecorder",
    "PromotionRefRepair",
    "Repair",
    "SweepPass",
    "UnfinishedRequestRedriver",
]
