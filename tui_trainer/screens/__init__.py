"""The app's screens: start form and run list, training dashboard, checkpoint list."""

from .checkpoints import CheckpointScreen
from .dashboard import DashboardScreen
from .start import StartScreen

__all__ = ["CheckpointScreen", "DashboardScreen", "StartScreen"]
