"""The app's own messages: what a screen asks the app to do.

Screens post these and the :class:`~tui_trainer.app.CifarTuiApp` handles them
(``on_start_run``, ``on_watch_run``, ``on_open_browser``, ``on_start_sweep``), so a screen never
calls the app's methods by name and can be tested on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from textual.message import Message


class StartRun(Message):
    """Train: a new run from ``config``, or a resumed one from ``resume`` (a checkpoint).
    ``detach``: in its own background process (it survives the app and the terminal),
    with the dashboard attached to it."""

    def __init__(self, config: Any = None, *, resume: Optional[str] = None,
                 resume_overrides: Optional[dict] = None, can_go_back: bool = True, detach: bool = False) -> None:
        super().__init__()
        self.config = config
        self.resume = resume
        self.resume_overrides = resume_overrides
        self.can_go_back = can_go_back
        self.detach = detach


class WatchRun(Message):
    """Open the dashboard on a run folder that another process writes (or wrote)."""

    def __init__(self, run_dir: Path, *, can_go_back: bool = True) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.can_go_back = can_go_back


class OpenBrowser(Message):
    """Open the checkpoint browser on a runs folder, the cursor on ``select`` (a run or checkpoint)."""

    def __init__(self, runs_dir: Optional[Path], *, select: Optional[str] = None) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.select = select


class StartSweep(Message):
    """Open the Sweep screen on ``runner`` (an :class:`engine.trials.Sweep`, its spec
    checked and its study open), training until the study holds ``trials`` trials."""

    def __init__(self, runner: Any, trials: int, *, can_go_back: bool = True) -> None:
        super().__init__()
        self.runner = runner
        self.trials = trials
        self.can_go_back = can_go_back
