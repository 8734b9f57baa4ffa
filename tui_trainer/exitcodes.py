"""The exit codes of every ``cifar-tui`` command, in one place.

0 done; 1 failed (training failed, a file could not be read, a run refused a command);
2 bad arguments (an unknown flag value, a RUN or CHECKPOINT that names nothing);
124 ``ctl``: no confirmation in time; 130 the app was quit while a run still went on
without a checkpoint; 128 + N: stopped by signal N after saving.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = EXIT_FAILED  # ctl: the run is not training, refused the command or ended first
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_ABANDONED = 130


def exit_for_signal(signum: int) -> int:
    """The exit code of a run stopped by signal ``signum`` (after saving)."""
    return 128 + signum
