"""Small text formats shared by the headless tables and the app."""

from __future__ import annotations

from typing import Any, Optional


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


def fmt_mib(n: float) -> str:
    """A number of bytes in MiB: "14.25 MiB"."""
    return f"{n / 2**20:,.2f} MiB"


def fmt_flops(n: float) -> str:
    """A FLOP count in a few characters: "1.75 GFLOPs", "7.0 MFLOPs"."""
    return f"{n / 1e9:,.2f} GFLOPs" if n >= 1e9 else f"{n / 1e6:,.1f} MFLOPs"


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


def fmt_setting(v: Any) -> str:
    """A sampled setting for a table cell: floats to 4 significant digits, None as -."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


SWEEP_COLUMNS = ("#", "state", "params", "best val", "epochs", "time")  # the sampled settings go after "state"


def sweep_trial_cells(row: dict, keys: list[str], best: Optional[float]) -> tuple[list[str], str]:
    """A sweep trial's table cells (number, state, the settings ``keys``, parameters, best
    validation accuracy, epochs, time) and its style: the best completed trial bold green,
    the ones that did not finish dimmed."""
    value = row.get("value")
    style = "bold green" if best is not None and row["state"] == "complete" and value == best else \
        "dim" if row["state"] in ("pruned", "failed", "infeasible", "interrupted") else ""
    cells = [str(row["number"]), row["state"], *(fmt_setting(row["params"].get(k)) for k in keys),
             "-" if row.get("params_count") is None else f"{row['params_count']:,}",
             "-" if value is None else f"{100 * value:.2f}%", str(row.get("epochs") or "-"),
             "-" if row.get("seconds") is None else f"{row['seconds']:.0f} s"]
    return cells, style


def sweep_best(rows: list[dict]) -> Optional[float]:
    """The best validation accuracy of the completed trials (None before the first)."""
    return max((r["value"] for r in rows if r["state"] == "complete" and r["value"] is not None), default=None)
