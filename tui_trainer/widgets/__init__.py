"""Dashboard widgets: training plots, status panel, event log."""

from .eventlog import EventLog
from .plots import TrainingPlots
from .status import StatusPanel

__all__ = ["EventLog", "StatusPanel", "TrainingPlots"]
