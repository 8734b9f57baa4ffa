"""Reading the training step's running sums back to the host without stalling the device.

On CUDA, reading a device tensor (``.tolist()``) waits for every step queued so far: the
host stops feeding the GPU until it has drained. :class:`SumsReader` instead starts an
asynchronous copy of the sums into a pinned host buffer, records a CUDA event after it, and
hands the values over one log later, when that copy has long finished (waiting on its event
then costs nothing). At an epoch's end the read is immediate, so the epoch's record has exact
totals (the epoch ends with validation and a checkpoint, which wait for the device anyway).

Where a read costs nothing extra (a CPU) every reading is immediate and the display current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from .device import pins


def delays(device: torch.device) -> bool:
    """Are the sums read one log late on ``device``? Where a read would stall the device (CUDA)."""
    return device.type == "cuda"


@dataclass
class Reading:
    """The sums of one log and what the caller noted with them (its step, its time, ...)."""

    values: list[float]
    note: Any


class SumsReader:
    """One run's reads of its running sums: :meth:`post` at a log, :meth:`now` at an epoch's
    end, :meth:`take` for a reading still pending (before a stop, a pause)."""

    def __init__(self, device: torch.device, delayed: Optional[bool] = None):
        self.device = device
        self.delayed = delays(device) if delayed is None else delayed
        self._buf: Optional[torch.Tensor] = None  # the host copy of the pending sums (pinned on CUDA)
        self._event: Optional[Any] = None  # recorded after the copy (CUDA)
        self._note: Any = None
        self._pending = False

    def post(self, sums: torch.Tensor, note: Any) -> Optional[Reading]:
        """This log's ``sums`` (a fresh tensor, not one that training goes on adding to).
        Returns the reading due now: the previous log's when reads are delayed (None at the
        first log since the last immediate read), this one's otherwise."""
        if not self.delayed:
            return Reading(sums.tolist(), note)
        due = self.take()
        self._copy(sums)
        self._note, self._pending = note, True
        return due

    def now(self, sums: torch.Tensor, note: Any) -> list[Reading]:
        """The pending reading, if any, then this one, read at once (exact: an epoch's end)."""
        pending = self.take()
        return ([pending] if pending is not None else []) + [Reading(sums.tolist(), note)]

    def take(self) -> Optional[Reading]:
        """The pending reading (its copy waited for), or None."""
        if not self._pending:
            return None
        if self._event is not None:
            self._event.synchronize()
        self._pending = False
        return Reading(self._buf.tolist(), self._note)

    def _copy(self, sums: torch.Tensor) -> None:
        """Start the copy of ``sums`` into the host buffer (made once, pinned where the
        device needs it) and mark its end with an event."""
        if self._buf is None or self._buf.shape != sums.shape or self._buf.dtype != sums.dtype:
            buf = torch.empty(sums.shape, dtype=sums.dtype)
            self._buf = buf.pin_memory() if pins(self.device) else buf
        self._buf.copy_(sums.detach(), non_blocking=True)
        self._event = None
        if self.device.type == "cuda":
            self._event = torch.cuda.Event()
            self._event.record()
