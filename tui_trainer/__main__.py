"""``python -m tui_trainer`` is the same as the ``cifar-tui`` command."""

from .cli import main

main()
