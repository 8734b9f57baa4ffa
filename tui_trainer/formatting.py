"""Small text formats shared by the headless tables and the app."""

from __future__ import annotations

from typing import Optional


# How a run's catalogue status (engine.events.RUN_STATUSES) is shown, in the tables of
# `cifar-tui runs` and on the start screen.
STATUS_STYLE = {"running": "bold green", "completed": "cyan", "stopped": "yellow", "pruned": "dim yellow",
                "failed": "bold red", "interrupted": "red", "damaged": "bold magenta"}


def format_size(n: float) -> str:
    """A file size in a few characters: 512B, 9.5K, 706K, 2.5M."""
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.0f}G"  # pragma: no cover


def fmt_pct(v: Optional[float], digits: int = 1, missing: str = "-", sign: bool = True) -> str:
    """A fraction as a percentage: 0.8734 -> "87.3%" (``sign=False``: "87.3"); None or NaN -> ``missing``."""
    if v is None or v != v:
        return missing
    return f"{100.0 * v:.{digits}f}" + ("%" if sign else "")


def data_progress_text(e) -> str:
    """An :class:`engine.events.DataProgress` in words: "decoding 50,000 images once, cached
    for next time: 12,000/50,000 (24%)", and when done "decoded 50,000 images (cached for
    next time)"."""
    if e.total and e.done >= e.total:
        what = e.message.replace("decoding", "decoded", 1)
        return what.replace(" once, cached for next time", " (cached for next time)")
    if not e.total:
        return e.message
    return f"{e.message}: {e.done:,}/{e.total:,} ({100 * e.done / e.total:.0f}%)"
