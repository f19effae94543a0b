"""The first code the `restique` command runs (the console script and `python -m restique`).

Until main() has set up its signal handling, a Ctrl-C would stop an import half-way with
Python's KeyboardInterrupt traceback. This module imports nothing heavy, so its handler is in
place a few hundred microseconds after the interpreter's own start-up: an interrupt that
early ends the command as restic's does, with its line and exit code 130 (nothing has been
done yet: no lock, no file). main() then installs the command's own handlers.
"""
import os

try:  # signal's C core: the module itself loads enum, functools and collections first (~6 ms)
    import _signal as signals
except ImportError:  # not CPython
    import signal as signals


def _interrupted_while_starting(signum, frame):
    os.write(2, b"signal interrupt received, cleaning up\n")
    os._exit(130)


def run() -> None:
    from .main import main

    main()


# handled even when started with SIGINT ignored, as main() handles it (restic does too)
signals.signal(signals.SIGINT, _interrupted_while_starting)
