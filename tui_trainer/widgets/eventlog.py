"""The event log: run start, checkpoints, mixup switches, warnings, state changes."""

from __future__ import annotations

from typing import Iterable, Optional

from rich.text import Text
from textual.widgets import RichLog

from ..runstate import LogLine, fmt_clock


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

    def add(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            text = Text(fmt_clock(line.time) + " ", style="dim")
            text.append(line.text, style=line.style)
            self.lines_written.append(text.plain)
            if len(self.lines_written) > 4000:
                del self.lines_written[:2000]
            self.write(text)
