"""The app's remembered settings (the theme), in platformdirs' user config folder.

``settings.json`` there holds a small JSON object; ``CIFAR_TUI_CONFIG_DIR`` moves the
folder (the tests use it). A missing or damaged file means the defaults; a folder
that cannot be written is not an error (the setting is just not remembered).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SETTINGS_FILE = "settings.json"


def config_dir() -> Path:
    env = os.environ.get("CIFAR_TUI_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("cifar-tui", appauthor=False))


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_settings() -> dict[str, Any]:
    from engine.safeio import read_json_dict

    return read_json_dict(settings_path())


def save_setting(name: str, value: Any) -> bool:
    """Remember one setting (the others are kept). Returns False if it could not be written."""
    from engine.files import atomic_write_json

    data = load_settings()
    if data.get(name) == value:
        return True
    data[name] = value
    try:
        settings_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(settings_path(), data)
    except OSError:
        return False
    return True
