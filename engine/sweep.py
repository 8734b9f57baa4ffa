"""Sweeps: a search over recipes and network shapes, with Optuna doing the searching.

Optuna samples (TPE by default, random or grid on request, seeded), prunes (median or
successive halving on each epoch's validation accuracy) and stores the study (an embedded
SQLite file ``RUNS/sweeps/NAME.db`` by default, or any storage URL Optuna takes, so that
processes on several GPUs or machines share one study). This module is only the glue:

- :func:`load_spec` reads a small TOML file (``[sweep]``, ``[fixed]``, ``[search]``) and
  refuses a bad one with one line naming the key;
- :mod:`engine.trials` asks the study for a trial, turns its parameters into a
  :class:`~engine.config.TrainConfig`, records a network over the budget as infeasible
  without training it, trains every other trial as an ordinary run (tagged with the study
  and trial number) and tells the study the best validation accuracy, or that it was pruned.

The sweep's own state lives in Optuna's storage; each run folder is written by the one
process that trains it. Optuna is imported only when a sweep runs.
"""

from __future__ import annotations

import math
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from .config import ConfigError, TrainConfig, make_config
from .safeio import UnreadableFile, read_bytes

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
METRICS = ("val_acc",)
SPEC_LIMIT = 256 << 10
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
SHAPE_TEXT_KEYS = ("blocks", "channels", "strides")
# settings a sweep never takes from a spec: where and how the run is kept, not what it trains
NOT_SEARCHABLE = ("runs_dir", "device", "sweep", "preset")
# trial states, as the sweep reports them (Optuna's, plus two of its own kept in user attributes)
# what a database says when two processes create Optuna's tables at once
CREATE_RACE = ("already exists", "alembic_version", "UNIQUE constraint failed", "duplicate key")
STATES = ("running", "queued", "complete", "pruned", "failed", "infeasible")


class SpecError(ValueError):
    """A spec file that cannot be used. One line that names the key."""


class SweepError(RuntimeError):
    """A sweep that cannot run (an unreachable storage, a study of another spec). One line."""


@dataclass(frozen=True)
class Param:
    name: str
    choices: Optional[tuple] = None
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def extremes(self) -> list:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    metric: str = "val_acc"
    max_params: int = 5_000_000
    preset: str = "paper"
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    trial_minutes: Optional[float] = None
    fixed: dict = field(default_factory=dict)
    search: tuple = ()

    def config(self, params: dict[str, Any], **where: Any) -> TrainConfig:
        """The run a trial trains: the preset, the fixed settings, the sampled ones, and
        ``where`` (runs_dir, device, the sweep tag). Raises ConfigError."""
        return make_config(self.preset, **{**self.settings(params), **where, "max_params": self.max_params})

    def settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's own settings: the fixed ones and the sampled ones (the preset gives the rest)."""
        return {**self.fixed, **params}


# ------------------------------------------------------------------ the spec file


def load_spec(path: str | Path, name: Optional[str] = None) -> SweepSpec:
    """The spec in the TOML file ``path`` (``name`` overrides ``[sweep] name``), checked."""
    try:
        text = read_bytes(path, SPEC_LIMIT).decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; give a sweep spec (TOML, see the README's Sweeps)") from None
    except (OSError, UnreadableFile, UnicodeDecodeError) as e:
        raise SpecError(f"{path} cannot be read ({e})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path} is not valid TOML ({e})") from None
    return parse_spec(doc, source=str(path), name=name)


def parse_spec(doc: dict, source: str = "the spec", name: Optional[str] = None) -> SweepSpec:
    def bad(msg: str) -> SpecError:
        return SpecError(f"{source}: {msg}")

    for table in doc:
        if table not in ("sweep", "fixed", "search"):
            raise bad(f"unknown table [{table}]; a spec has [sweep], [fixed] and [search]")
    head = _table(doc, "sweep", bad)
    known = {"name", "metric", "max_params", "preset", "sampler", "pruner", "seed", "trial_minutes"}
    for key in head:
        if key not in known:
            raise bad(f"[sweep] {key!r} is not a sweep setting; use {', '.join(sorted(known))}")
    name = name if name is not None else head.get("name")
    if not good_name(name):
        raise bad(f"[sweep] name {NAME_RULE}")
    spec = dict(name=name)
    for key, allowed in (("metric", METRICS), ("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in head:
            if head[key] not in allowed:
                raise bad(f"[sweep] {key} = {str(head[key])[:30]!r}: use one of {', '.join(allowed)}")
            spec[key] = head[key]
    for key, low in (("max_params", 1), ("seed", 0)):
        if key in head:
            if not isinstance(head[key], int) or isinstance(head[key], bool) or not low <= head[key] <= 2**32:
                raise bad(f"[sweep] {key} must be a whole number (got {str(head[key])[:30]!r})")
            spec[key] = head[key]
    if "trial_minutes" in head:
        v = head["trial_minutes"]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and v > 0):
            raise bad("[sweep] trial_minutes must be a positive number of minutes")
        spec["trial_minutes"] = float(v)
    if "preset" in head:
        spec["preset"] = head["preset"]
    fixed = _table(doc, "fixed", bad)
    search = _table(doc, "search", bad)
    fields = set(TrainConfig.__dataclass_fields__)
    for table, entries in (("fixed", fixed), ("search", search)):
        for key in entries:
            if key not in fields or key in NOT_SEARCHABLE or key == "max_params":
                hint = _closest(key, fields - set(NOT_SEARCHABLE))
                raise bad(f"[{table}] {key!r} is not a train setting{f' (did you mean {hint}?)' if hint else ''}")
    for key in set(fixed) & set(search):
        raise bad(f"{key!r} is both in [fixed] and [search]; keep it in one")
    params = tuple(_param(key, value, bad) for key, value in search.items())
    if spec.get("sampler") == "grid" and any(p.choices is None for p in params):
        raise bad("sampler = \"grid\" needs choices = [...] for every [search] key")
    result = SweepSpec(**spec, fixed=dict(fixed), search=params)
    _check_values(result, bad)
    return result


def _table(doc: dict, key: str, bad) -> dict:
    t = doc.get(key, {})
    if not isinstance(t, dict):
        raise bad(f"[{key}] must be a table")
    return t


def _param(key: str, value: Any, bad) -> Param:
    if not isinstance(value, dict):
        raise bad(f"[search] {key} must be {{ choices = [...] }} or {{ low = ..., high = ... }}")
    extra = set(value) - {"choices", "low", "high", "log"}
    if extra:
        raise bad(f"[search] {key}: unknown key {sorted(extra)[0]!r}; use choices, or low, high and log")
    if "choices" in value:
        choices = value["choices"]
        if not isinstance(choices, list) or not choices or len(choices) > 1000:
            raise bad(f"[search] {key}: choices must be a list of 1 to 1000 values")
        if not all(isinstance(c, (bool, int, float, str)) for c in choices) or len({type(c) for c in choices}) > 1 and \
                not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            raise bad(f"[search] {key}: choices must be values of one type (numbers, text or true/false)")
        if len(set(choices)) != len(choices):
            raise bad(f"[search] {key}: a choice is listed twice")
        return Param(key, choices=tuple(choices))
    if "low" not in value or "high" not in value:
        raise bad(f"[search] {key}: a range needs both low and high")
    low, high, log = value["low"], value["high"], value.get("log", False)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (low, high)):
        raise bad(f"[search] {key}: low and high must be numbers")
    if not isinstance(log, bool):
        raise bad(f"[search] {key}: log must be true or false")
    if not low < high:
        raise bad(f"[search] {key}: the range is empty (low {low} is not below high {high})")
    if log and low <= 0:
        raise bad(f"[search] {key}: a log range needs low > 0")
    integer = isinstance(low, int) and isinstance(high, int) and \
        isinstance(TrainConfig.__dataclass_fields__[key].default, int)
    return Param(key, low=low, high=high, log=log, integer=integer)


def _check_values(spec: SweepSpec, bad) -> None:
    """Every fixed value and every extreme of each searched one makes a valid config (apart
    from the parameter budget), and some point of the space fits the budget."""
    base = {k: v for k, v in spec.fixed.items()}
    try:
        make_config(spec.preset, **base)
    except ConfigError as e:
        raise bad(f"[fixed]: {e}") from None
    for p in spec.search:
        for v in p.extremes():
            try:
                make_config(spec.preset, **{**base, p.name: v})
            except ConfigError as e:
                raise bad(f"[search] {p.name} = {str(v)[:30]!r}: {e}") from None
    if spec.metric == "val_acc" and make_config(spec.preset, **base).val_size == 0 and \
            not any(p.name == "val_size" for p in spec.search):
        raise bad("the metric val_acc needs a validation split: set val_size in [fixed] (e.g. 5000)")
    if _smallest_params(spec) > spec.max_params:
        raise bad(f"no network of this search fits max_params {spec.max_params:,} "
                  f"(the smallest has {_smallest_params(spec):,} parameters)")


def _smallest_params(spec: SweepSpec) -> int:
    """The fewest parameters any network of the search space has (each shape setting at each
    of its extremes; a width range at its low end)."""
    shape_keys = {"width", "blocks", "channels", "strides", "stem_channels", "se", "se_reduction"}
    options = [(p.name, p.extremes()) for p in spec.search if p.name in shape_keys]
    combos: list[dict] = [{}]
    for name, values in options:
        combos = [{**c, name: v} for c in combos for v in values][:4096]
    best = None
    for c in combos:
        try:
            n = make_config(spec.preset, **{**spec.fixed, **c}).net_shape().params()
        except ConfigError:
            continue
        best = n if best is None else min(best, n)
    return best if best is not None else spec.max_params + 1


def _closest(key: str, names: Iterable[str]) -> Optional[str]:
    import difflib

    found = difflib.get_close_matches(key, sorted(names), n=1)
    return found[0] if found else None


# ------------------------------------------------------------------ storage and study


NAME_RULE = "must be letters, digits, '-', '_' or '.' (at most 64, not starting with '.'), e.g. name = \"lr-mixup\""


def good_name(name: Any) -> bool:
    """A study name that is also a safe file name in RUNS/sweeps (no path, no hidden file)."""
    return (isinstance(name, str) and 0 < len(name) <= 64 and set(name) <= NAME_CHARS
            and not name.startswith("."))


def default_storage(runs_dir: Path, name: str, create: bool = True) -> str:
    """The embedded SQLite storage RUNS/sweeps/NAME.db. ``create=False`` (reading a
    study: --status, --best) never makes the folder or the file: a study that is not
    there raises :class:`SweepError`."""
    if not good_name(name):
        raise SweepError(f"the sweep name {str(name)[:70]!r} {NAME_RULE}")
    folder = Path(runs_dir) / "sweeps"
    path = folder / (name + ".db")
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    elif not path.is_file() or path.is_symlink():
        raise SweepError(f"no sweep named {name!r} in {folder}; list the runs folder's sweeps with "
                         f"ls {folder}, or start one with: cifar-tui --no-ui sweep SPEC.toml")
    return f"sqlite:///{path}"


def open_storage(url: str):
    """An Optuna storage for ``url``: an RDB URL (sqlite:///, postgresql://, mysql://) or a
    journal file (a path ending in .log or .journal, for a shared disk)."""
    import optuna

    try:
        if "://" not in url:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(Path(url).expanduser())))
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        return _rdb_storage(optuna, _with_driver(url), kwargs)
    except Exception as e:  # noqa: BLE001 - any driver's error: one line for the user
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise SweepError(f"cannot open the sweep storage {redact(url)} ({text})") from None


def _with_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 takes
    psycopg (3) for a bare ``postgresql://``; with only psycopg2 installed, name it."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _rdb_storage(optuna, url: str, kwargs: dict, tries: int = 6):
    """Optuna's RDBStorage; retried when another process creating the same new database
    won the race to its tables or its schema version (they are there now)."""
    import random
    import time

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's OperationalError/ProgrammingError, by driver
            if attempt == tries - 1 or not any(m in str(e) for m in CREATE_RACE):
                raise
            time.sleep(0.1 + random.random() * 0.3 * (attempt + 1))


def redact(url: str) -> str:
    """A storage URL without its password (it is printed and stored in run folders)."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" not in creds:  # a user, no password
            return url
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def make_sampler(spec: SweepSpec):
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: list(p.choices) for p in spec.search}, seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


def make_pruner(spec: SweepSpec):
    import optuna

    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)  # (never on epoch 1 alone)


def open_study(spec: SweepSpec, storage_url: str):
    """The study of ``spec`` in the storage (created the first time, joined afterwards)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize",
                                    sampler=make_sampler(spec), pruner=make_pruner(spec), load_if_exists=True)
    except Exception as e:  # noqa: BLE001 - an unreachable server, a read-only file...
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise SweepError(f"cannot open the sweep {spec.name!r} in {redact(storage_url)} ({text})") from None
    stored = study.user_attrs.get("spec")
    mine = spec_record(spec)
    if stored is None:
        study.set_user_attr("spec", mine)
    elif stored != mine:
        raise SweepError(f"the sweep {spec.name!r} in {redact(storage_url)} was started with another spec; "
                         f"give this one another --name")
    return study


def spec_record(spec: SweepSpec) -> dict:
    return {"metric": spec.metric, "max_params": spec.max_params, "preset": spec.preset, "sampler": spec.sampler,
            "pruner": spec.pruner, "seed": spec.seed, "fixed": spec.fixed,
            "search": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in p.__dict__.items()} for p in spec.search]}


def as_train_flags(spec: SweepSpec, params: dict) -> list[str]:
    """``train`` flags that repeat a trial: the preset, the fixed and the sampled settings."""
    out = ["--preset", spec.preset]
    for key, value in spec.settings(params).items():
        out += [f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out

