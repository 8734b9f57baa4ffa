"""Presets are data: a name, a one-line summary and settings, one entry each; the CLI's
--preset help is read from them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from engine import config
from engine.config import PRESETS, Preset, describe_presets, make_config

REPO = Path(__file__).resolve().parents[2]


def test_each_preset_carries_its_name_a_summary_and_settings():
    assert list(PRESETS) == ["paper", "fast", "speedrun", "tiny"]
    for name, preset in PRESETS.items():
        assert isinstance(preset, Preset) and preset.name == name
        assert preset.summary and "\n" not in preset.summary
        assert make_config(name).preset == name
        assert dict(preset) == dict(preset.settings)  # a preset reads as its settings
    assert config.DEFAULT_PRESET in PRESETS and make_config().preset == config.DEFAULT_PRESET


def test_a_new_preset_entry_is_usable_and_described(monkeypatch):
    monkeypatch.setitem(PRESETS, "demo", Preset("demo", "two quick epochs", dict(PRESETS["tiny"].settings, epochs=2)))
    assert make_config("demo").epochs == 2
    assert "demo - two quick epochs" in describe_presets()


def test_the_cli_help_lists_the_presets_from_their_entries():
    code = textwrap.dedent("""
        from engine import config
        config.PRESETS["demo"] = config.Preset("demo", "two quick epochs", dict(config.PRESETS["tiny"].settings))
        from tui_trainer.cli import main
        try:
            main(["train", "--help"])
        except SystemExit:
            pass
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60).stdout
    squeezed = "".join(out.split())  # the help is wrapped to the terminal (at spaces and hyphens)
    for preset in [*PRESETS.values(), Preset("demo", "two quick epochs", {})]:
        assert "".join(f"{preset.name} - {preset.summary}".split()) in squeezed, (preset.name, out)
