"""The browser's evaluation panes: the Evaluation tab and the predictions Gallery.

Each pane owns its Textual thread worker: :class:`EvaluationPane` evaluates a
checkpoint (with a progress bar) and shows the result and its confusion matrix;
:class:`Gallery` shows the predictions of a fresh evaluation, or reads again the
images of a stored one. Images are drawn with rich-pixels' half-cell renderer (two
pixels per character cell, in true colour).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, ProgressBar, Select, Static

from engine.runs import complete_result, eval_split, latest_evaluation

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
TILE_WIDTH = CAPTION_CHARS + 1  # (ImageTile's width: the caption and a space)
IMAGE_SIZES = (16, 12, 8)  # pixels square, largest first: the gallery takes the largest that shows two rows


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
        self.image, self.image_size, self.caption_text = image, size, caption
        self.caption = caption.plain
        self.index = index
        self.correct = ok
        self.tooltip = Text(f"#{index}: true {true_name}, predicted {pred_name} ({100 * confidence:.1f}%)")


    def show_at(self, size: int) -> None:
        """Draw the image at another size (the gallery's room changed), the caption kept."""
        if size != self.image_size:
            self.image_size = size
            self.update(Group(image_renderable(self.image, size), self.caption_text))


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
        self.of: Optional[str] = None  # the checkpoint whose predictions are shown
        self.loading: Optional[str] = None  # the checkpoint whose stored predictions are being read
        self.images = None
        self.labels: list[int] = []
        self.preds: list[int] = []
        self.conf: list[float] = []
        self.class_names: list[str] = []
        self.only_wrong = False
        self.class_filter: Optional[int] = None
        self.shown: list[int] = []
        self.image_size = IMAGE_SIZES[0]  # fitted to the room (on_resize)
        self.columns = 4

    def compose(self) -> ComposeResult:
        yield Static("Evaluate a checkpoint (e) to see its predictions here.", id="gallery-note")
        yield Grid(id="gallery-grid")

    def on_resize(self) -> None:
        self.fit()

    def fit(self) -> None:
        """Fit the tiles to the room (:meth:`_fit_to_room`): the tiles shown are redrawn in
        place (never mounted again: a second set would show while the first is removed)."""
        if self._fit_to_room():
            for tile in self.query(ImageTile):
                tile.show_at(self.image_size)

    def _fit_to_room(self) -> bool:
        """As many columns as whole tiles fit across; the largest images with which two rows
        of tiles fit the height (the note above them counted). True if that changed."""
        if not self.size.width or not self.size.height:
            return False  # (another tab is shown)
        width = self.scrollable_content_region.width or self.size.width
        columns = max(1, (width + 1) // (TILE_WIDTH + 1))
        room = self.size.height - self.query_one("#gallery-note").outer_size.height
        size = next((px for px in IMAGE_SIZES if 2 * (px // 2 + 2) <= room), IMAGE_SIZES[-1])
        if (columns, size) == (self.columns, self.image_size):
            return False
        self.columns, self.image_size = columns, size
        self.query_one("#gallery-grid", Grid).styles.grid_size_columns = columns
        return True

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
        what = Text.assemble(("Misclassified only: on", "bold yellow") if self.only_wrong else
                             ("Misclassified only: off", "bold"), f" · {len(self.shown)} of {len(sel):,}{cls} shown")
        what.append(" · w toggles · k class · a all", style="dim")
        note.update(what)
        self._fit_to_room()  # (before the tiles are made: their size is chosen now, not after)
        grid.mount_all([
            ImageTile(self.images[i], self.class_names[self.labels[i]], self.class_names[self.preds[i]], self.conf[i], i,
                      size=self.image_size)
            for i in self.shown
        ])
        self.call_after_refresh(self.fit)  # (the note may have taken another line: fitted again if so)

    # ------------------------------------------------------------ what to show
    def set_filter(self, *, only_wrong: Optional[bool] = None, class_filter: Optional[int] = -1) -> None:
        """Show only the misclassified images (or all), of one class (None: all classes)."""
        if only_wrong is not None:
            self.only_wrong = only_wrong
        if class_filter != -1:
            self.class_filter = class_filter
        self.refresh_tiles()

    def next_class(self) -> bool:
        """Show the next class only; False when there are no predictions yet."""
        if not self.class_names:
            return False
        self.set_filter(class_filter=0 if self.class_filter is None else (self.class_filter + 1) % len(self.class_names))
        return True

    def show_evaluation(self, path: str, evaluation) -> None:
        """A fresh :class:`engine.evaluate.CheckpointEvaluation` of ``path``."""
        r = evaluation.result
        self.of, self.loading = path, None
        self.set_data(evaluation.images.x, evaluation.images.y.tolist(), r.predictions.tolist(),
                      r.confidence.tolist(), evaluation.classes)

    def show_stored(self, path: str) -> None:
        """The stored predictions of ``path``, if it has some: its images are read again from
        its data, in a thread, without evaluating again."""
        if path in (self.of, self.loading):
            return
        stored = latest_evaluation(path)
        if stored is None or not stored.has_predictions:
            return
        self.loading = path
        self.show_note(f"Loading the images of the stored evaluation ({stored.source})...")
        self._load(path, stored.result)

    def cancel_loading(self) -> None:
        """A fresh evaluation is on its way: stored predictions read meanwhile are not shown."""
        self.loading = None

    @work(thread=True, exclusive=True, group="gallery")
    def _load(self, path: str, result: dict) -> None:
        try:
            from engine.data import DataError
            from engine.evaluate import gallery_from_stored

            try:
                images, preds, conf, classes = gallery_from_stored(result)
            except (DataError, OSError) as e:
                self.app.call_from_thread(self._load_failed, path, str(e))
                return
        except Exception as e:  # the browser must keep working whatever happens
            self.app.call_from_thread(self._load_failed, path, f"{type(e).__name__}: {e}")
            return
        self.app.call_from_thread(self._loaded, path, images, preds, conf, classes)

    def _loaded(self, path: str, images, preds, conf, classes) -> None:
        if path != self.loading:
            return  # a fresh evaluation (or another checkpoint's) took its place
        self.of, self.loading = path, None
        self.set_data(images.x, images.y.tolist(), preds, conf, classes)

    def _load_failed(self, path: str, message: str) -> None:
        if path == self.loading:
            self.loading = None
        self.show_note(f"The stored predictions cannot be shown: {message}")


# the evaluation pane's choice of images: a test split, or the run's held-out validation
# images (for data without a test split, such as a training-only zip)
SPLIT_CHOICES = [("test split", "test"), ("validation images", "val")]
SPLIT_WORDS = {"test": "the test split", "val": "the run's validation images"}


class EvaluationPane(Vertical):
    """The Evaluation tab: which data (a test split, or the run's validation images), a
    progress bar, the result and its confusion matrix. It evaluates in its own thread
    worker; ``on_evaluated(path, evaluation)`` is called when a fresh result is shown (the
    engine stores it beside the checkpoint, each split's apart; ``evaluation`` is an
    :class:`engine.evaluate.CheckpointEvaluation`)."""

    DEFAULT_CSS = """
    EvaluationPane #eval-bar { height: auto; }
    EvaluationPane #eval-data { width: 1fr; }
    EvaluationPane #eval-split { width: 24; }
    EvaluationPane #eval-go { min-width: 12; }
    EvaluationPane #eval-progress { height: 1; }
    EvaluationPane #eval-summary { height: auto; }
    """

    def __init__(self, on_evaluated: Optional[Callable[[str, Any], None]] = None, **kw) -> None:
        super().__init__(**kw)
        self.on_evaluated = on_evaluated
        self.evaluating: Optional[str] = None  # the checkpoint being evaluated
        self.fresh: Optional[str] = None  # the checkpoint whose evaluation is on screen, just computed
        self.shown: Optional[str] = None  # the checkpoint selected

    def compose(self) -> ComposeResult:
        with Horizontal(id="eval-bar"):
            yield Select(SPLIT_CHOICES, value="test", allow_blank=False, id="eval-split",
                         tooltip="test: the data's test split; validation: the images the run held out of its "
                                 "training data (the seeded split it trained with), for data without a test split")
            yield Input(placeholder="data: blank = the checkpoint's own, or a path / cifar10", id="eval-data")
            yield Button("Evaluate", id="eval-go", variant="primary")
        yield ProgressBar(id="eval-progress", show_eta=True, classes="-hidden")
        with VerticalScroll():
            yield Static("Press e to evaluate the selected checkpoint.", id="eval-summary")
            yield Static("", id="eval-matrix")

    @property
    def split(self) -> str:
        value = self.query_one("#eval-split", Select).value
        return value if isinstance(value, str) else "test"

    def choose_split(self, split: str) -> None:
        self.query_one("#eval-split", Select).value = split

    @on(Select.Changed, "#eval-split")
    def _split_changed(self) -> None:
        if self.shown is not None:  # that split's stored result, if it has one
            self.fresh = None
            self.show_checkpoint(self.shown)

    def show_checkpoint(self, path: str) -> None:
        """The selected checkpoint's stored evaluation on the chosen split, without
        recomputing (unless an evaluation runs, or this one's fresh result is on screen)."""
        self.shown = path
        if self.evaluating is not None or path == self.fresh:
            return
        self.fresh = None
        split = self.split
        stored = latest_evaluation(path, split=split)
        if stored is None or not complete_result(stored.result):
            stale = latest_evaluation(path, include_stale=True, split=split) is not None
            self._show("The stored evaluation is damaged: press e to evaluate again." if stored is not None else
                       "The stored evaluation is of an earlier version of this file: press e to evaluate it."
                       if stale else f"Not evaluated on {SPLIT_WORDS[split]} yet: press e (or the button).")
            return
        self.show_result(stored.result, stored=True)

    def evaluate(self, path: str) -> None:
        """Evaluate ``path`` on the chosen split of the data in the field (blank: its own)."""
        self.evaluating = path
        data = self.query_one("#eval-data", Input).value.strip() or None
        self._show(Text(f"Evaluating {path} on {SPLIT_WORDS[self.split]} ..."))
        bar = self.query_one(ProgressBar)
        bar.update(total=None, progress=0)
        bar.remove_class("-hidden")
        self._evaluate(path, data, self.split)

    @work(thread=True, exclusive=True, group="evaluate")
    def _evaluate(self, path: str, data: Optional[str], split: str = "test") -> None:
        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self.query_one(ProgressBar).update, total=total, progress=done)

        try:
            from engine.checkpoint import CheckpointError
            from engine.config import ConfigError
            from engine.data import DataError
            from engine.evaluate import evaluate_checkpoint

            try:
                result = evaluate_checkpoint(path, data, progress=progress, split=split)
            except (CheckpointError, DataError, ConfigError, OSError) as e:
                self.app.call_from_thread(self._failed, str(e))
                return
        except Exception as e:  # the browser must keep working whatever happens
            self.app.call_from_thread(self._failed, f"{type(e).__name__}: {e}")
            return
        self.app.call_from_thread(self._done, path, result)

    def _failed(self, message: str) -> None:
        self.evaluating = None
        self.query_one(ProgressBar).add_class("-hidden")
        self.query_one("#eval-summary", Static).update(Text(f"Evaluation failed: {message}", style="bold red"))
        self.notify(message, title="Evaluation failed", severity="error", timeout=10, markup=False)

    def _done(self, path: str, evaluation) -> None:
        self.evaluating = None
        self.fresh = path
        self.show_result(evaluation.to_dict())
        if self.on_evaluated is not None:  # at once: the table is refilled in the same frame as the result
            self.on_evaluated(path, evaluation)

    def _show(self, summary: Text | str, matrix: object = "") -> None:
        self.query_one("#eval-summary", Static).update(summary)
        self.query_one("#eval-matrix", Static).update(matrix)

    def show_result(self, result: dict, stored: bool = False) -> None:
        head = Text()
        split = eval_split(str(result.get("data_source", "")))
        head.append(f"{100 * result['accuracy']:.2f}% accuracy on {SPLIT_WORDS[split]}", style="bold")
        head.append(f", loss {result['loss']:.4f}, on {result['images']:,} images of {result['data_source']}")
        if stored:
            gallery = "the Gallery tab shows its predictions" if isinstance(result.get("predictions"), list) \
                else "press e to evaluate again and fill the gallery"
            head.append(f"\n(stored result from {result.get('evaluated', 'earlier')}; {gallery})", style="dim")
        for note in result.get("notes") or []:
            head.append(f"\nnote: {note}", style="yellow")
        self.query_one(ProgressBar).add_class("-hidden")
        self._show(head, Group(Text("confusion matrix: rows are true classes, columns predicted; acc% per class",
                                    style="dim"), confusion_renderable(result)))
