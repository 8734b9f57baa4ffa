"""The Sweep screen on a finished tiny study (trained once for this module): the table
sorts (keys and a click on a header), the setting plot's key cycles the searched
settings, pruned curves are grey, `c` opens a trial in the browser, `n` the new-run form
with the best trial's settings; and the start screen's Sweep form, and `cifar-tui sweep
SPEC.toml` through the CLI, run a sweep in the app."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from engine.sweep import default_storage, load_spec
from engine.trials import Sweep, best_trial, summary_rows
from tui_trainer.app import CifarTuiApp, build_sweep_app
from tui_trainer.screens.sweep import SweepScreen
from tui_trainer.screens.sweepplots import DIMMED, SettingPlot, TrialCurves
from test_ui_sweep import spec_text
from ui_support import wait_for

SEARCH = """
lr = { low = 0.01, high = 0.4, log = true }
mixup_prob = { choices = [0.3, 0.6] }
"""
ENQUEUED = [{"lr": 0.2, "mixup_prob": 0.6}, {"lr": 0.01, "mixup_prob": 0.3}, {"lr": 0.05, "mixup_prob": 0.6}]


def write_spec(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(spec_text(name, epochs=1, search=SEARCH))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three finished trials (lr 0.2, 0.01, 0.05): (spec file, runs folder)."""
    root = tmp_path_factory.mktemp("sweep-study")
    spec_file = write_spec(root, "shared")
    runs = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_TUI_CACHE_DIR", str(root / "cache"))
        spec = load_spec(spec_file)
        runner = Sweep(spec, default_storage(runs, spec.name), runs_dir=str(runs), device="cpu")
        for params in ENQUEUED:
            runner.study.enqueue_trial(params)
        assert runner.run(3) == 3
    return spec_file, runs


def sweep_app(study) -> CifarTuiApp:
    spec_file, runs = study
    spec = load_spec(spec_file)
    return build_sweep_app(Sweep(spec, default_storage(runs, spec.name), runs_dir=str(runs), device="cpu"), 3)


def on_finished_sweep(study, size: tuple[int, int], body, prepare=lambda app: None) -> None:
    """Run ``body(app, pilot, screen)`` on the Sweep screen of the shared finished study."""
    async def main():
        app = sweep_app(study)
        prepare(app)
        async with app.run_test(size=size) as pilot:
            await body(app, pilot, await finished_screen(app, pilot))

    asyncio.run(main())


def order(screen: SweepScreen) -> list[int]:
    table = screen.query_one("#sweep-trials", DataTable)
    return [int(str(table.get_row_at(i)[0]).split()[0]) for i in range(table.row_count)]


async def finished_screen(app, pilot) -> SweepScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.finished and app.screen.rows,
                   what="the finished sweep's table")
    return app.screen


def header_offset(table: DataTable, column: str) -> tuple[int, int]:
    """Where to click on ``column``'s header (x inside the table, row 0)."""
    x = 0
    for key, col in table.columns.items():
        if key.value == column:
            return x + 1, 0
        x += col.get_render_width(table)
    raise KeyError(column)


@pytest.mark.timeout(120)
def test_the_table_fills_and_sorts_by_key_and_by_header(study):
    async def body(app, pilot, screen):
        assert order(screen) == [0, 1, 2]
        assert [r["state"] for r in screen.rows] == ["complete"] * 3
        table = screen.query_one("#sweep-trials", DataTable)
        await pilot.click("#sweep-trials", offset=header_offset(table, "lr"))
        await pilot.pause()
        assert screen.sort_column == "lr" and order(screen) == [1, 2, 0]  # lr 0.01, 0.05, 0.2
        await pilot.click("#sweep-trials", offset=header_offset(table, "lr"))  # again: reversed
        await pilot.pause()
        assert order(screen) == [0, 2, 1]
        for column in ("#", "state", "best val", "params", "time"):  # o cycles from the first
            await pilot.press("o")
            assert screen.sort_column == column
        by_time = sorted(screen.rows, key=lambda r: (r["seconds"], r["number"]))
        assert order(screen) == [r["number"] for r in by_time]
        assert "sorted by time" in str(screen.query_one("#sweep-status").render())
        await pilot.press("o", "o", "o")  # "#", state, best val: best first
        assert screen.sort_column == "best val"
        values = [next(r["value"] for r in screen.rows if r["number"] == n) for n in order(screen)]
        assert values == sorted(values, reverse=True)

    on_finished_sweep(study, (100, 30), body)


@pytest.mark.timeout(120)
def test_s_cycles_the_setting_plot_and_pruned_curves_are_grey(study):
    async def body(app, pilot, screen):
        plot = screen.query_one("#setting-plot", SettingPlot)
        assert screen.setting == "lr" and plot.param.name == "lr"
        assert sorted(round(10 ** x, 6) for x, _, _ in plot.shown) == [0.01, 0.05, 0.2]  # a log axis
        assert "lr" in str(screen.query_one("#setting-title").render())
        await pilot.press("s")
        assert screen.setting == "mixup_prob" and plot.param.name == "mixup_prob"
        assert sorted(x for x, _, _ in plot.shown) == [1.0, 2.0, 2.0]  # categories: 0.3 first, 0.6 twice
        assert "mixup_prob" in str(screen.query_one("#setting-title").render())
        await pilot.press("s")
        assert screen.setting == "lr"
        # a pruned trial's curve is drawn grey, a complete one in its own colour
        rows = [dict(r) for r in screen.rows]
        rows[0]["state"] = "pruned"
        screen.show_rows(rows)
        curves = screen.query_one("#sweep-plot", TrialCurves)
        assert curves.style_of(0, "#0")[0] == DIMMED and curves.style_of(1, "#1")[0] != DIMMED
        assert [name for name, _, _ in curves.series][0] == "#0"  # drawn first, under the others
        assert any(kind == "pruned" for _, _, kind in plot.shown)

    on_finished_sweep(study, (80, 24), body)


@pytest.mark.timeout(120)
def test_c_opens_the_selected_trial_in_the_browser_and_esc_comes_back(study):
    from tui_trainer.screens import BrowserScreen

    async def body(app, pilot, screen):
        screen.query_one("#sweep-trials", DataTable).move_cursor(row=1)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows,
                       what="the browser")
        current = app.screen.current()
        assert str(current.run.path) == screen.rows[1]["run_dir"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="the Sweep screen again")

    on_finished_sweep(study, (100, 30), body)


@pytest.mark.timeout(120)
def test_n_opens_the_new_run_form_with_the_best_trials_settings(study):
    from tui_trainer.screens.newrun import NewRunScreen
    from tui_trainer.widgets.runform import RunForm

    started = []

    def prepare(app):
        app.start_training = lambda config, **kw: started.append(config)  # (nothing trains)

    async def body(app, pilot, screen):
        top = best_trial(screen.runner.study)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen), what="the new-run form")
        form = app.screen.query_one(RunForm)
        assert math.isclose(float(form.query_one("#f-lr", Input).value), top["params"]["lr"])
        assert form.query_one("#f-subset", Input).value == "64" and form.query_one("#f-width", Input).value == "0.0625"
        form.query_one("#f-epochs", Input).value = "3"  # the user's edit wins over the trial's
        form.submit()
        await wait_for(pilot, lambda: started, what="the new run")
        config = started[0]
        # mixup_prob has no field in the form: kept from the trial, not the preset's 0.9
        assert config.mixup_prob == top["params"]["mixup_prob"] and config.epochs == 3
        assert math.isclose(config.lr, top["params"]["lr"]) and config.sweep in (None, "")

    on_finished_sweep(study, (80, 24), body, prepare)


@pytest.mark.timeout(300)
def test_the_start_screens_sweep_form_refuses_a_bad_spec_and_starts_a_good_one(tmp_path):
    from tui_trainer.screens import StartScreen

    runs = tmp_path / "runs"
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nname = "b"\n[search]\nlrr = { low = 0.1, high = 0.2 }\n')
    good = write_spec(tmp_path, "form")

    async def main():
        app = CifarTuiApp("start", runs_dir=str(runs))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="the start screen")
            start = app.screen
            form = start.query_one("#sweep-form")
            form.query_one("#s-spec", Input).value = str(bad)
            form.query_one("#s-trials", Input).value = "2"
            await pilot.click("#s-start")
            await wait_for(pilot, lambda: form.error, what="the spec's error")
            assert "'lrr' is not a train setting (did you mean lr?)" in form.error and "\n" not in form.error
            assert app.screen is start and not (runs / "sweeps").exists()  # nothing started
            form.query_one("#s-spec", Input).value = str(good)
            await pilot.click("#s-start")
            await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen), what="the Sweep screen")
            screen = app.screen
            await wait_for(pilot, lambda: screen.finished, timeout=240, what="two trials")
            assert [r["state"] for r in screen.rows] == ["complete", "complete"] and screen.trials == 2
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is start, what="the start screen again")

    asyncio.run(main())
    assert (runs / "sweeps" / "form.db").is_file()


@pytest.mark.timeout(300)
def test_cifar_tui_sweep_without_no_ui_runs_the_sweep_screen(tmp_path, monkeypatch):
    """The CLI's own path (typer, the spec, the study, the app it builds, its exit code),
    the terminal replaced by a pilot."""
    from typer.testing import CliRunner

    from tui_trainer.cli import app as cli

    spec = write_spec(tmp_path, "cli")
    seen = {}

    def run_headless(self, *args, **kwargs):
        async def drive():
            async with self.run_test(size=(80, 24)) as pilot:
                screen = await finished_screen(self, pilot)
                seen["states"] = [r["state"] for r in screen.rows]
                seen["keys"] = {a.binding.action for a in screen.active_bindings.values() if a.binding.show}
                await pilot.press("q")
                await wait_for(pilot, lambda: self.return_code is not None, what="the app to exit")
            return self.return_code

        return asyncio.run(drive())

    monkeypatch.setattr(CifarTuiApp, "run", run_headless)
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--trials", "1", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert seen["states"] == ["complete"]
    assert {"quit_sweep", "stop_after", "prune", "watch", "checkpoints", "new_run", "sort", "setting"} <= seen["keys"]
    spec_obj = load_spec(spec)
    rows = summary_rows(Sweep(spec_obj, default_storage(tmp_path / "runs", "cli"), runs_dir=str(tmp_path / "runs")).study)
    assert [r["state"] for r in rows] == ["complete"]
