"""The app's screens: start form and run list, training dashboard, checkpoint list."""

from .browser import BrowserScreen
from .dashboard import DashboardScreen
from .start import StartScreen

__all__ = ["BrowserScreen", "DashboardScreen", "StartScreen"]
