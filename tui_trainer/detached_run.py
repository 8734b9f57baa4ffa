"""The process of a detached run: ``python -m tui_trainer.detached_run SPEC_FILE``.

Started by :func:`tui_trainer.detach.launch` in a session of its own; it trains
headless (:func:`tui_trainer.headless.run_headless`) in the run folder its spec names
(the settings come in that owner-only file, never on the command line: ``ps`` shows it).
Its output goes to the run folder's log, where the launcher reads an ``error:`` line.
"""

from __future__ import annotations

import sys


def child_main(argv: list[str]) -> int:
    """Train headless in its spec's run folder; the exit code of :func:`run_headless`."""
    from .cliargs import one_line
    from .detach import DetachError, read_spec
    from .exitcodes import EXIT_USAGE
    from .headless import run_headless

    try:
        spec = read_spec(argv)
    except DetachError as e:
        print(f"error: {one_line(e)}", flush=True)
        return EXIT_USAGE
    return run_headless(config=spec["config"], resume=spec["resume"], resume_overrides=spec["resume_overrides"],
                        run_dir=spec["run_dir"])


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
