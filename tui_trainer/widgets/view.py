"""How the dashboard's widgets are refreshed: one way for all of them.

On each tick the dashboard folds the new events into its
:class:`~tui_trainer.runstate.RunState` and hands every widget the same
:class:`RunView` through ``update_from(view)``. A widget decides by itself what
changed and when to draw it: what must show at once is a Textual reactive whose
watch method draws (a new state, an epoch's end, the terminal's size); numbers
that move with every step are drawn at most every few seconds (:class:`Pace`).
However fast the steps come, the widgets draw a few times a second at most.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from ..runstate import RunState


@dataclass(frozen=True)
class RunView:
    """What a dashboard widget is refreshed from."""

    state: RunState
    source_kind: str = "live"  # live (this app's run), watch (another process's), replay
    quiet_for: Optional[float] = None  # a watched run: seconds since its last event
    quitting: bool = False  # the app is quitting once the run has saved


class Refreshed(Protocol):
    """A dashboard widget."""

    def update_from(self, view: RunView) -> None: ...


class Pace:
    """At most one draw every ``seconds`` for what changes continuously."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._at = -1e9

    def due(self) -> bool:
        return self.clock() - self._at >= self.seconds

    def drawn(self) -> None:
        self._at = self.clock()
