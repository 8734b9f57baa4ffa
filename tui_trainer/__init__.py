"""cifar-tui: the terminal front end (Textual dashboard, CLI, headless renderer).

Keep this module light: it must not import torch or textual, so that
``cifar-tui --help`` and the headless runner start fast. The dashboard lives in
:mod:`tui_trainer.app`; import it only when the UI is wanted.
"""

__all__: list[str] = []
