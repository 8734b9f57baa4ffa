"""The browser's edits of a run: rename it, write a note on it, delete it.

A mixin of :class:`~tui_trainer.screens.browser.BrowserScreen` (it uses the screen's
``current()``, ``marked`` and ``action_refresh``); the work is the engine's
(:func:`engine.runs.rename_run`, :meth:`engine.rundir.RunDir.write_note`,
:func:`engine.runs.delete_run`), which refuses a running run.
"""

from __future__ import annotations

from typing import Optional

from engine.rundir import RunDirError
from engine.runs import delete_run, find_run, rename_run

from ..formatting import format_size
from .newrun import ConfirmScreen, TextPromptScreen


class RunEdits:
    """Actions ``rename`` (f2), ``note`` (t) and ``delete`` (d) on the selected row's run."""

    def _prompt(self, title: str, value: str, placeholder: str, hint: str, apply) -> None:
        """Ask for one line; ``apply(text)`` does the engine's work (a RunDirError is shown,
        not raised) and returns the run folder to select afterwards, or None to keep it."""
        def chosen(text: Optional[str]) -> None:
            if text is None:
                return
            try:
                select = apply(text)
            except RunDirError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            self.action_refresh(**({"select_run": select} if select else {}))

        self.app.push_screen(TextPromptScreen(title, value, placeholder=placeholder, hint=hint), chosen)

    def action_rename(self) -> None:
        row = self.current()
        if row is None:
            return
        old = row.run

        def rename(name: str) -> Optional[str]:
            if name.strip() == old.run_id:
                return None
            new = rename_run(old.path, name)
            self.marked = [str(new.path) if p == old.path else p for p in self.marked]
            self.notify(f"renamed {old.run_id} to {new.run_id}", timeout=3, markup=False)
            return str(new.path)

        self._prompt(f"Rename {old.run_id}", old.run_id, "a new name", "letters, digits, - _ .", rename)

    def action_note(self) -> None:
        row = self.current()
        if row is None:
            return
        run = row.run

        def note(text: str) -> None:
            run.run_dir.write_note(text)

        self._prompt(f"Note on {run.run_id}", run.note, "e.g. baseline, lr 0.1",
                     "one line, stored in the run folder; blank removes it", note)

    def action_delete(self) -> None:
        row = self.current()
        if row is None:
            return
        run = find_run(row.run.path) or row.run  # its status now, not when the table was read
        if run.status == "running":
            self.notify(f"{run.run_id} is running ({run.reason}); stop it before you delete it.",
                        severity="error", markup=False)
            return
        size = format_size(sum(c.size for c in run.checkpoints))

        def chosen(yes: Optional[bool]) -> None:
            if not yes:
                return
            try:
                delete_run(run.path)
            except RunDirError as e:
                self.notify(str(e), severity="error", markup=False)
                self.action_refresh()
                return
            self.marked = [p for p in self.marked if p != run.path]
            self.notify(f"deleted {run.run_id}", timeout=3, markup=False)
            self.action_refresh()

        self.app.push_screen(ConfirmScreen(f"Delete the run {run.run_id} ({run.status}, {len(run.checkpoints)} "
                                           f"checkpoint(s), {size}) and everything in its folder {run.path}? "
                                           "This cannot be undone."), chosen)
