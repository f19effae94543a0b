"""Holds on Ctrl-C and SIGTERM (restique.interrupts): a held signal is handled when the last
hold ends, by the handler installed then; holds from other threads hold nothing."""
import signal
import threading

import pytest

from restique import interrupts


@pytest.fixture
def handler():
    """A SIGTERM handler that honours holds and raises, as the command line's does."""
    seen = []

    def on_term(signum, frame):
        seen.append(signum)
        if not interrupts.held_back(signum):
            raise RuntimeError(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_term)
    interrupts.reset()
    yield seen
    interrupts.reset()
    signal.signal(signal.SIGTERM, previous)


def test_a_held_signal_is_handled_when_the_hold_ends(handler):
    with pytest.raises(RuntimeError, match="signal 15"):
        with interrupts.hold():
            signal.raise_signal(signal.SIGTERM)  # noted, not raised
            handler.append("still running")
    assert handler == [15, "still running", 15]


def test_only_the_last_of_nested_holds_lets_it_through(handler):
    outer = interrupts.hold()
    with interrupts.hold():
        signal.raise_signal(signal.SIGTERM)
    assert handler == [15]  # the outer hold is still in force
    with pytest.raises(RuntimeError):
        outer.release()
    outer.release()  # once only: nothing more happens


def test_without_a_signal_a_hold_changes_nothing(handler):
    with interrupts.hold():
        pass
    assert handler == []
    with pytest.raises(RuntimeError):
        signal.raise_signal(signal.SIGTERM)


def test_a_hold_taken_in_another_thread_holds_nothing(handler):
    holds = []
    thread = threading.Thread(target=lambda: holds.append(interrupts.hold()))
    thread.start()
    thread.join()
    with pytest.raises(RuntimeError):
        signal.raise_signal(signal.SIGTERM)
    holds[0].release()
