"""A sweep's trials: each asked from the study, trained as an ordinary run, told back.

:class:`Sweep` asks the study (engine.sweep) for a trial, turns its parameters into a
:class:`~engine.config.TrainConfig`, records a network over the budget as infeasible without
training it, trains every other trial as an ordinary run (tagged ``NAME#N``) with a
listener that reports each epoch's validation accuracy and stops the run when the pruner
says so, and tells the study the best validation accuracy, or that it was pruned. Trials
left running by a killed process of this machine are marked failed and queued again with
their run folder, so the next start resumes them.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from .config import ConfigError, TrainConfig
from .sweep import SweepError, SweepSpec, open_study

Listener = Callable[[Any], None]


def trial_state(t) -> str:
    """running / queued / complete / pruned / failed / infeasible, for a frozen trial."""
    if t.user_attrs.get("infeasible"):
        return "infeasible"
    return {"RUNNING": "running", "WAITING": "queued", "COMPLETE": "complete", "PRUNED": "pruned"}.get(
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
        self.running = False  # run() is training trials (a UI waits for it before the process ends)
        self.recovered = recover_interrupted(self.study)
        self._bundle: Optional[tuple[str, Any]] = None  # (source, DataBundle) of the last trial

    def _data(self, source: str):
        """The trial's images, decoded once for the trials that share a source (the last one
        is kept: a sweep over data sources decodes each as its trials come)."""
        from .data import load_data

        if self._bundle is None or self._bundle[0] != source:
            self._bundle = (source, load_data(source))
        return self._bundle[1]

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
        self.running = True
        try:
            while not self.stopping:
                nxt = self._next_trial(trials)
                if nxt is None:
                    break
                if self._train(*nxt):
                    trained += 1
        finally:
            self.running = False
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

        from .rundir import RunDir
        from .trainer import Trainer

        watch = _TrialWatch(trial, self.spec.trial_minutes)
        resume = trial.user_attrs.get("resume_from")
        if resume and (not Path(resume).is_dir() or RunDir(resume).checkpoint_for("resume") is None):
            resume = None  # killed before its first checkpoint: the trial starts over in a new folder
        kwargs = dict(resume=resume, resume_overrides={"device": self.device} if self.device else {}) if resume \
            else {}
        trainer = Trainer(None if resume else config, listeners=[watch, *self.listeners],
                          data=self._data(config.data), **kwargs)
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
