"""The browser's gallery filled from a stored evaluation, its filter's state, the progress bar."""

from __future__ import annotations

import asyncio

import pytest

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


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_the_gallery_shows_two_whole_rows_with_whole_labels(run_copy, size):
    """In the real app (its stylesheet): the table gives the gallery room, the tiles' images
    shrink until two rows fit, as many columns as whole tiles fit across."""
    from engine import evaluate
    from tui_trainer.app import CifarTuiApp
    from tui_trainer.widgets.evaluation import CAPTION_CHARS

    evaluate.evaluate_checkpoint(str(RunDir(run_copy).best_checkpoint))

    async def main():
        app = CifarTuiApp("browse", runs_dir=str(run_copy.parent))
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows, what="rows")
            s = app.screen
            best = next(i for i, r in enumerate(s.rows) if r.ckpt.name == "best.pt")
            s.query_one("#browser-table").move_cursor(row=best)
            s.query_one("#browser-tabs", TabbedContent).active = "tab-gallery"
            gallery = s.query_one(Gallery)
            await wait_for(pilot, lambda: len(gallery.query(ImageTile)) == 48, what="the tiles")
            await pilot.pause(0.5)
            tiles = list(gallery.query(ImageTile))
            visible = [t for t in tiles if t.region.height and t.region.bottom <= gallery.region.bottom]
            rows = sorted({t.region.y for t in visible})
            assert len(rows) >= 2, (gallery.region, [t.region for t in tiles[:10]])
            per_row = [t for t in visible if t.region.y == rows[0]]
            assert len(per_row) == gallery.columns >= 4
            for t in visible:  # a caption's two lines fit its tile: nothing cut
                assert t.region.width >= CAPTION_CHARS and t.region.right <= gallery.region.right
                assert all(len(line) <= CAPTION_CHARS for line in t.caption.splitlines())
            screen_bottom = size[1] - 1  # (the footer's row)
            assert gallery.region.bottom <= screen_bottom

    asyncio.run(main())
