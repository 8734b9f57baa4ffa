"""Sweeps: a search over recipes and network shapes, with Optuna doing the searching.

Optuna samples (TPE by default, random or grid on request, seeded), prunes (median or
successive halving on each epoch's validation accuracy) and stores the study (an embedded
SQLite file ``RUNS/sweeps/NAME.db`` by default, or any storage URL Optuna takes, so that
processes on several GPUs or machines share one study). This module is only the glue:

- :func:`load_spec` reads a small TOML file (``[sweep]``, ``[fixed]``, ``[search]``) and
  refuses a bad one with one line naming the key;
- :class:`Sweep` asks the study for a trial, turns its parameters into a
  :class:`~engine.config.TrainConfig`, records a network over the budget as infeasible
  without training it, trains every other trial as an ordinary run (tagged with the study
  and trial number) and tells the study the best validation accuracy, or that it was pruned.

The sweep's own state lives in Optuna's storage; each run folder is written by the one
process that trains it. Optuna is imported only when a sweep runs.
"""

from __future__ import annotations

import math
import os
import socket
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

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
STATES = ("running", "complete", "pruned", "failed", "infeasible")


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
        return make_config(self.preset, **{**self.fixed, **params, **where, "max_params": self.max_params})


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
    if not isinstance(name, str) or not name or len(name) > 64 or not set(name) <= NAME_CHARS:
        raise bad("[sweep] name must be letters, digits, '-', '_' or '.' (at most 64), e.g. name = \"lr-mixup\"")
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


def default_storage(runs_dir: Path, name: str) -> str:
    folder = Path(runs_dir) / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / (name + '.db')}"


def open_storage(url: str):
    """An Optuna storage for ``url``: an RDB URL (sqlite:///, postgresql://, mysql://) or a
    journal file (a path ending in .log or .journal, for a shared disk)."""
    import optuna

    try:
        if "://" not in url:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(Path(url).expanduser())))
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - any driver's error: one line for the user
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise SweepError(f"cannot open the sweep storage {redact(url)} ({text})") from None


def redact(url: str) -> str:
    """A storage URL without its password (it is printed and stored in run folders)."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
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


def trial_state(t) -> str:
    """running / complete / pruned / failed / infeasible, for a frozen trial."""
    if t.user_attrs.get("infeasible"):
        return "infeasible"
    return {"RUNNING": "running", "WAITING": "running", "COMPLETE": "complete", "PRUNED": "pruned"}.get(
        t.state.name, "failed")


def counted(t) -> bool:
    """Does this trial count towards ``--trials``? Infeasible ones (never trained) and
    interrupted ones (trained again under a new number) do not."""
    if t.state.name == "WAITING":  # queued, not started
        return False
    return not (t.user_attrs.get("infeasible") or t.user_attrs.get("interrupted") or t.user_attrs.get("surplus"))


def host_pid() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive_here(attrs: dict) -> bool:
    from .files import pid_alive

    if attrs.get("host") != socket.gethostname():
        return True  # another machine's trial: its own process decides (Optuna's heartbeat)
    pid = attrs.get("pid")
    return isinstance(pid, int) and pid_alive(pid)


def recover_interrupted(study) -> list[int]:
    """Trials left running by a killed sweep process of this machine: each is marked failed
    (``interrupted``) and its settings queued again, with its run folder to resume from.
    Returns their numbers."""
    import optuna

    done = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if _alive_here(t.user_attrs):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        attrs = {"resume_from": t.user_attrs["run_dir"]} if t.user_attrs.get("run_dir") else {}
        study.enqueue_trial(dict(t.params), user_attrs=attrs)
        done.append(t.number)
    return done


def summary_rows(study) -> list[dict]:
    """One row per trial, for ``--status``, the table and the Sweep screen."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": trial_state(t), "params": dict(t.params),
                     "value": t.value if t.value is not None and math.isfinite(t.value) else t.user_attrs.get("best"),
                     "params_count": t.user_attrs.get("params_count"), "epochs": t.user_attrs.get("epochs"),
                     "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                     if t.datetime_complete and t.datetime_start else None,
                     "run_dir": t.user_attrs.get("run_dir"), "reason": t.user_attrs.get("reason"),
                     "curve": t.intermediate_values and [t.intermediate_values[k] for k in sorted(t.intermediate_values)]})
    return rows


def best_trial(study) -> Optional[dict]:
    rows = [r for r in summary_rows(study) if r["state"] == "complete" and r["value"] is not None]
    return max(rows, key=lambda r: r["value"]) if rows else None


def as_train_flags(spec: SweepSpec, params: dict) -> list[str]:
    """``train`` flags that repeat a trial: the preset, the fixed and the sampled settings."""
    out = ["--preset", spec.preset]
    for key, value in {**spec.fixed, **params}.items():
        out += [f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out


Listener = Callable[[Any], None]


# ------------------------------------------------------------------ running trials


class _TrialWatch:
    """An engine listener for one trial: reports each validation accuracy to the study,
    stops the run (with a checkpoint) when the pruner says so or the trial's time is up."""

    def __init__(self, trial, minutes: Optional[float]):
        self.trial, self.minutes = trial, minutes
        self.trainer = None
        self.best: Optional[float] = None
        self.epochs = 0
        self.pruned = False
        self.timed_out = False
        self.started: Optional[float] = None

    def __call__(self, event) -> None:
        import time

        from . import events as ev

        if isinstance(event, ev.RunStarted):
            self.started = time.monotonic()
            self.trial.set_user_attr("run_dir", event.run_dir)
            self.trial.set_user_attr("params_count", event.params)
        elif isinstance(event, ev.EpochDone):
            self.epochs = event.epoch
            self.trial.set_user_attr("epochs", event.epoch)
            if event.val_acc is not None and math.isfinite(event.val_acc):
                self.best = event.val_acc if self.best is None else max(self.best, event.val_acc)
                self.trial.set_user_attr("best", self.best)
                self.trial.report(event.val_acc, event.epoch)
                if not self.pruned and self.trial.should_prune():
                    self.pruned = True
                    self._stop(f"pruned by the sweep at epoch {event.epoch} (validation accuracy "
                               f"{100 * event.val_acc:.2f}% below the median)", "pruned")
        elif isinstance(event, ev.StepDone) and self.minutes and self.started is not None and not self.timed_out:
            if time.monotonic() - self.started > 60 * self.minutes:
                self.timed_out = True
                self._stop(f"the trial's time budget ({self.minutes:g} min) is spent")

    def _stop(self, reason: str, outcome: str = "stopped") -> None:
        from . import events as ev

        if self.trainer is not None:
            self.trainer.send(ev.Stop(save=True, reason=reason, outcome=outcome))


class Sweep:
    """Trials of one study, trained one after another in this process."""

    def __init__(self, spec: SweepSpec, storage_url: str, *, runs_dir: Optional[str] = None,
                 device: Optional[str] = None, listeners: Iterable[Listener] = (),
                 on_trial: Callable[[str, dict], None] = lambda what, row: None):
        from .rundir import default_runs_dir

        self.spec, self.storage_url = spec, storage_url
        self.runs_dir = str(Path(runs_dir).expanduser()) if runs_dir else str(default_runs_dir())
        self.device = device
        self.listeners = list(listeners)
        self.on_trial = on_trial  # ("started" | "finished", row) for a renderer
        self.study = open_study(spec, storage_url)
        self.trainer = None  # the running trial's Trainer
        self.watch: Optional[_TrialWatch] = None
        self.stopping = False  # stop after the current trial (Ctrl+C, the screen's key)
        self.recovered = recover_interrupted(self.study)

    def done(self, total: int) -> int:
        return sum(1 for t in self.study.get_trials(deepcopy=False) if counted(t))

    def stop_after_trial(self) -> None:
        self.stopping = True

    def interrupt(self) -> None:
        """Stop now: the current trial saves a checkpoint and is queued to resume later."""
        from . import events as ev

        self.stopping = True
        if self.trainer is not None:
            self.trainer.send(ev.Stop(save=True, reason="the sweep was stopped; its next start resumes this trial"))

    def prune_current(self) -> None:
        if self.watch is not None and not self.watch.pruned:
            self.watch.pruned = True
            self.watch._stop("pruned by hand from the Sweep screen", "pruned")

    def run(self, trials: int) -> int:
        """Train trials until the study holds ``trials`` counted ones (or a stop). Returns
        how many this process trained."""
        trained = 0
        while not self.stopping:
            nxt = self._next_trial(trials)
            if nxt is None:
                break
            if self._train(*nxt):
                trained += 1
        return trained

    def _next_trial(self, total: int):
        """The next trial to train, or None when the study is full. A network over the
        budget is recorded as infeasible at once and another is asked for."""
        import optuna

        for _ in range(1000):
            if self.done(total) >= total:
                return None
            trial = self.study.ask()
            for k, v in host_pid().items():
                trial.set_user_attr(k, v)
            earlier = sum(1 for t in self.study.get_trials(deepcopy=False) if counted(t) and t.number < trial.number)
            if earlier >= total:  # another process took the last place meanwhile
                trial.set_user_attr("surplus", True)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return None
            params = {p.name: p.suggest(trial) for p in self.spec.search}
            try:
                config = self.spec.config(params, runs_dir=self.runs_dir, device=self.device,
                                          sweep=f"{self.spec.name}#{trial.number}")
            except ConfigError as e:
                trial.set_user_attr("infeasible", True)
                trial.set_user_attr("reason", str(e))
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.on_trial("finished", {"number": trial.number, "state": "infeasible", "params": params,
                                           "reason": str(e)})
                continue
            return trial, config
        raise SweepError("1,000 sampled networks in a row were over the budget; narrow the [search] ranges")

    def _train(self, trial, config: TrainConfig) -> bool:
        import optuna

        from .trainer import Trainer

        watch = _TrialWatch(trial, self.spec.trial_minutes)
        resume = trial.user_attrs.get("resume_from")
        if resume and not Path(resume).is_dir():
            resume = None
        kwargs = dict(resume=resume, resume_overrides={"device": self.device} if self.device else {}) if resume \
            else {}
        trainer = Trainer(None if resume else config, listeners=[watch, *self.listeners], **kwargs)
        watch.trainer, self.trainer, self.watch = trainer, trainer, watch
        self.on_trial("started", {"number": trial.number, "state": "running", "params": dict(trial.params)})
        try:
            outcome = trainer.run()
        finally:
            self.trainer, self.watch = None, None
        result = trainer.result
        row = {"number": trial.number, "params": dict(trial.params), "value": watch.best, "epochs": watch.epochs,
               "run_dir": str(trainer.run_dir) if trainer.run_dir else None}
        if watch.pruned:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            row["state"] = "pruned"
        elif outcome == "completed" or (watch.timed_out and watch.best is not None):
            self.study.tell(trial, watch.best if watch.best is not None else float("nan"),
                            state=optuna.trial.TrialState.COMPLETE if watch.best is not None
                            else optuna.trial.TrialState.FAIL)
            row["state"] = "complete" if watch.best is not None else "failed"
        elif self.stopping and outcome == "stopped":
            trial.set_user_attr("interrupted", True)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.study.enqueue_trial(dict(trial.params), user_attrs={"resume_from": row["run_dir"]}
                                     if row["run_dir"] else {})
            row["state"] = "interrupted"
        else:
            reason = (result.reason if result is not None else "") or outcome
            trial.set_user_attr("reason", reason[:300])
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            row["state"], row["reason"] = "failed", reason
        self.on_trial("finished", row)
        return row["state"] in ("complete", "pruned", "failed")
