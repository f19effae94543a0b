"""How main() ends the process: exit handlers run, the output is flushed, and a thread that is
not a daemon is waited for. (Skipping the interpreter's teardown with os._exit saved ~8 ms a
command but left `serve` running after SIGTERM now and then under load; these keep whatever
replaces sys.exit honest.)"""
import signal
import sys

import pytest

from conftest import run_program

# a command's output, a pending exit handler and, with "thread", a non-daemon thread still working
PROBE = """
import atexit, sys, threading, time
out, mode = sys.argv[1], sys.argv[2]
sys.argv = ["restique", "version"]
atexit.register(lambda: open(out, "a").write("exit handler ran\\n"))
if mode == "thread":
    def work():
        time.sleep(0.5)
        open(out, "a").write("thread finished\\n")
    threading.Thread(target=work).start()
sys.stdout.write("x" * 100000)  # buffered: must still reach the pipe
from restique.cli.main import main
main()
"""


def test_exit_handlers_run_and_output_is_flushed(tmp_path):
    proc = run_program([sys.executable, "-c", PROBE], tmp_path / "log", "plain")
    assert proc.stdout.startswith(b"x" * 100000) and proc.stdout.endswith(b"\n")
    assert (tmp_path / "log").read_text() == "exit handler ran\n"


def test_a_thread_still_working_is_waited_for(tmp_path):
    proc = run_program([sys.executable, "-c", PROBE], tmp_path / "log", "thread")
    assert proc.stdout.startswith(b"x" * 100000)
    assert (tmp_path / "log").read_text() == "thread finished\nexit handler ran\n"


# stop signals that reach the interpreter's exit, after the command is over
LATE_SIGNALS = """
import atexit, os, signal, sys, time
out, signals = sys.argv[1], [int(n) for n in sys.argv[2:]]
def late():
    for signum in signals:
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # the handler runs here
    open(out, "w").write("exit handler ran to its end\\n")
atexit.register(late)
from restique.cli.main import main
sys.argv = ["restique", "version"]
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_exit_lets_the_exit_finish_without_a_traceback(tmp_path, signum):
    """Once the command is over its exit code is decided: a SIGTERM or Ctrl-C that lands in the
    interpreter's exit handlers (as the signal tests once caught, 0.1 s into an `ls`) is noted,
    not raised there ("Exception ignored in atexit callback" and a traceback)."""
    proc = run_program([sys.executable, "-c", LATE_SIGNALS, tmp_path / "log", int(signum)], check=False)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert proc.stdout.startswith(b"restique ")
    assert (tmp_path / "log").read_text() == "exit handler ran to its end\n"


def test_a_second_signal_during_the_exit_ends_it_at_once(tmp_path):
    """An exit that takes long enough for a second stop signal (a thread it waits for) ends at
    once, with restic's code for that signal."""
    proc = run_program([sys.executable, "-c", LATE_SIGNALS, tmp_path / "log", int(signal.SIGTERM),
                        int(signal.SIGINT)], check=False)
    assert (proc.returncode, proc.stderr) == (130, b"")
    assert not (tmp_path / "log").exists()
