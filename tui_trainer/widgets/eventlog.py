"""The event log: run start, checkpoints, mixup switches, warnings, state changes."""

from __future__ import annotations

from collections import deque
from typing import Iterable, Optional

from rich.text import Text
from textual.widgets import RichLog

from ..runstate import LogLine, fmt_clock
from .view import RunView


REWRAP_LINES = 500  # lines kept to re-wrap after a resize


class EventLog(RichLog):
    DEFAULT_CSS = """
    EventLog {
        height: 1fr;
        min-height: 4;
        border: round $primary-darken-1;
        border-title-color: $text;
        padding: 0 0 0 1;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(wrap=True, markup=False, highlight=False, max_lines=2000, auto_scroll=True, min_width=16, id=id)
        self.border_title = "Events"
        self.lines_written: list[str] = []  # plain text, for tests and debugging
        self._texts: deque[Text] = deque(maxlen=REWRAP_LINES)
        self._wrapped_at = 0

    def update_from(self, view: RunView) -> None:
        """The run's new log lines (each is shown once)."""
        lines = view.state.take_log()
        if lines:
            self.add(lines)

    def add(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            text = Text(fmt_clock(line.time) + " ", style="dim")
            text.append(line.text, style=line.style)
            self.lines_written.append(text.plain)
            if len(self.lines_written) > 4000:
                del self.lines_written[:2000]
            self._texts.append(text)
            self.write(text)

    def on_resize(self) -> None:
        # RichLog wraps a line once, when it is written: wrap the recent ones again for the new width
        width = self.scrollable_content_region.width
        if width and self._wrapped_at and width != self._wrapped_at:
            self.clear()
            for text in self._texts:
                self.write(text)
        self._wrapped_at = width or self._wrapped_at
