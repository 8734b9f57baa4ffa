"""The browser's gallery filled from a stored evaluation, its filter's state, the progress bar."""

from __future__ import annotations

import asyncio

from textual.app import App
from textual.widgets import ProgressBar, TabbedContent

from engine.rundir import RunDir
from tui_trainer.screens.browser import BrowserScreen
from tui_trainer.widgets.evaluation import Gallery, ImageTile
from ui_support import press, wait_for


class Host(App):
    def __init__(self, root, select):
        super().__init__()
        self.root, self.select = root, select

    def on_mount(self) -> None:
        self.push_screen(BrowserScreen(self.root, select=self.select))


def test_a_stored_evaluation_fills_the_gallery_without_evaluating(run_copy, monkeypatch):
    from engine import evaluate
    from engine.runs import latest_evaluation

    best = RunDir(run_copy).best_checkpoint
    done = evaluate.evaluate_checkpoint(str(best))
    stored = latest_evaluation(best)
    assert stored is not None and stored.has_predictions
    assert len(stored.result["predictions"]) == stored.result["images"] == 2000
    assert stored.result["predictions"] == done.result.predictions.tolist()

    def no_evaluation(*a, **kw):  # the browser must not evaluate again
        raise AssertionError("evaluated again")

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", no_evaluation)

    async def main():
        app = Host(run_copy.parent, str(best))
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows, what="rows")
            s = app.screen
            assert s.current().path == str(best)
            assert s.query_one(ProgressBar).has_class("-hidden")  # no bar (and no "100%") unless evaluating
            assert "the Gallery tab shows its predictions" in str(s.query_one("#eval-summary").render())
            s.query_one("#browser-tabs", TabbedContent).active = "tab-gallery"
            gallery = s.query_one(Gallery)
            await wait_for(pilot, lambda: s.gallery_of == str(best), what="the stored predictions")
            assert gallery.preds == done.result.predictions.tolist() and len(gallery.query(ImageTile)) == 48
            assert "Misclassified only: off" in str(gallery.query_one("#gallery-note").render())
            keys = {b.binding.description for b in s.active_bindings.values() if b.binding.key == "w" and b.enabled}
            assert keys == {"Misclassified"}
            await press(pilot, "w")
            await wait_for(pilot, lambda: gallery.only_wrong, what="the filter")
            assert "Misclassified only: on" in str(gallery.query_one("#gallery-note").render())
            assert all(not t.correct for t in gallery.query(ImageTile))
            keys = {b.binding.description for b in s.active_bindings.values() if b.binding.key == "w" and b.enabled}
            assert keys == {"All images"}  # the footer says what w does now
            await press(pilot, "w")
            await wait_for(pilot, lambda: not gallery.only_wrong, what="all images again")

    asyncio.run(main())


def test_captions_keep_whole_class_names():
    import torch

    img = torch.zeros((3, 32, 32), dtype=torch.uint8)
    tile = ImageTile(img, "automobile", "airplane", 0.987, 3)
    assert tile.caption.splitlines() == ["automobile", "> airplane 99%"]
    long = ImageTile(img, "a-very-long-class-name-indeed", "another-very-long-class-name", 0.5, 0)
    first, second = long.caption.splitlines()
    assert first.endswith("…") and len(first) == 17 and second.endswith("… 50%") and len(second) <= 17
