"""Widgets for an evaluation result: a confusion-matrix grid and a predictions gallery.

Images are drawn with rich-pixels' half-cell renderer (two pixels per character
cell, in true colour).
"""

from __future__ import annotations

from typing import Optional, Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.widgets import Static

from ..formatting import fmt_pct


def confusion_renderable(result: dict) -> Table:
    """Rows: true class; columns: predicted class; the diagonal in green, errors in red
    (brighter = more), and each class's accuracy at the end of its row."""
    classes: Sequence[str] = result.get("classes") or [str(i) for i in range(len(result["confusion_matrix"]))]
    cm = result["confusion_matrix"]
    table = Table(box=None, padding=(0, 0), show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("", no_wrap=True, style="bold", min_width=8, max_width=10)
    for c in classes:
        table.add_column(Text(c[:4]), justify="right", no_wrap=True, min_width=5)
    table.add_column(" acc%", justify="right", no_wrap=True, min_width=6)
    for i, c in enumerate(classes):
        row_total = max(1, sum(cm[i]))
        cells = []
        for j, v in enumerate(cm[i]):
            share = v / row_total
            if i == j:
                style = f"bold black on rgb(0,{int(90 + 165 * share)},0)"
            elif v == 0:
                style = "bright_black"
            else:
                style = f"white on rgb({int(60 + 195 * min(1.0, share * 4))},0,0)"
            cells.append(Text(f"{v:>5}", style=style))
        acc = result["per_class_accuracy"][i]
        cells.append(Text(f"{fmt_pct(acc, sign=False):>6}", style="bold green" if acc is not None and acc >= result["accuracy"] else "yellow"))
        table.add_row(Text(c[:10]), *cells)
    return table


def image_renderable(img_chw, size: int = 16):
    """A (3, H, W) uint8 tensor as half-block characters, ``size`` pixels square."""
    from PIL import Image
    from rich_pixels import HalfcellRenderer, Pixels

    arr = img_chw.permute(1, 2, 0).contiguous().numpy()
    img = Image.fromarray(arr, "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BOX)  # average, not nearest: keeps the picture readable
    return Pixels.from_image(img, renderer=HalfcellRenderer())


CAPTION_CHARS = 17  # a tile's width: whole CIFAR-10 class names ("automobile 100%") fit


def _fit(name: str, room: int) -> str:
    return name if len(name) <= room else name[: max(1, room - 1)] + "…"


class ImageTile(Static):
    """One prediction: the image, then the true class and `= predicted` (or `> predicted`
    when wrong) with the confidence; whole class names (a very long one ends in "…")."""

    DEFAULT_CSS = """
    ImageTile { width: 18; height: auto; padding: 0 1 0 0; }
    """

    def __init__(self, image, true_name: str, pred_name: str, confidence: float, index: int, size: int = 16):
        ok = true_name == pred_name
        pct = f" {100 * confidence:.0f}%"
        caption = Text(_fit(true_name, CAPTION_CHARS), style="bold", no_wrap=True)
        caption.append("\n")
        caption.append(("= " if ok else "> ") + _fit(pred_name, CAPTION_CHARS - 2 - len(pct)),
                       style="green" if ok else "bold red")
        caption.append(pct, style="dim")
        super().__init__(Group(image_renderable(image, size), caption))
        self.caption = caption.plain
        self.index = index
        self.correct = ok
        self.tooltip = Text(f"#{index}: true {true_name}, predicted {pred_name} ({100 * confidence:.1f}%)")


class Gallery(VerticalScroll):
    """Test images with their true and predicted labels, filterable."""

    DEFAULT_CSS = """
    Gallery { height: 1fr; }
    Gallery Grid { grid-size: 4; grid-gutter: 0 1; height: auto; grid-rows: auto; }
    Gallery #gallery-note { height: auto; color: $text-muted; }
    """

    MAX_TILES = 48

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.images = None
        self.labels: list[int] = []
        self.preds: list[int] = []
        self.conf: list[float] = []
        self.class_names: list[str] = []
        self.only_wrong = False
        self.class_filter: Optional[int] = None
        self.shown: list[int] = []

    def compose(self) -> ComposeResult:
        yield Static("Evaluate a checkpoint (e) to see its predictions here.", id="gallery-note")
        yield Grid(id="gallery-grid")

    def show_note(self, message: str) -> None:
        self.query_one("#gallery-note", Static).update(Text(message))

    def set_data(self, images, labels, preds, conf, classes) -> None:
        self.images = images
        self.labels = [int(v) for v in labels]
        self.preds = [int(v) for v in preds]
        self.conf = [float(v) for v in conf]
        self.class_names = list(classes)
        self.refresh_tiles()

    def selection(self) -> list[int]:
        idx = range(len(self.labels))
        if self.only_wrong:
            idx = [i for i in idx if self.preds[i] != self.labels[i]]
        if self.class_filter is not None:
            idx = [i for i in idx if self.labels[i] == self.class_filter]
        return list(idx)

    def refresh_tiles(self) -> None:
        grid = self.query_one("#gallery-grid", Grid)
        grid.remove_children()
        note = self.query_one("#gallery-note", Static)
        if self.images is None:
            note.update(f"Evaluate a checkpoint (e) to see its predictions here. "
                        f"Misclassified only: {'on' if self.only_wrong else 'off'} (w).")
            return
        sel = self.selection()
        self.shown = sel[: self.MAX_TILES]
        cls = f" of class {self.class_names[self.class_filter]}" if self.class_filter is not None else ""
        if self.only_wrong:
            what = Text.assemble(("Misclassified only: on", "bold yellow"), f" ({len(sel):,} images{cls}; w shows all)")
        else:
            what = Text.assemble(("Misclassified only: off", "bold"), f" ({len(sel):,} images{cls}; w: only the wrong ones)")
        what.append(f"  showing {len(self.shown)}.  k: next class   a: all classes", style="dim")
        note.update(what)
        grid.mount_all([
            ImageTile(self.images[i], self.class_names[self.labels[i]], self.class_names[self.preds[i]], self.conf[i], i)
            for i in self.shown
        ])
