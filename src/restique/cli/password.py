"""Asking the user for a password on the terminal or stdin. Where a configured password comes
from (file, command, environment) is library code: operations/open_repo.py."""
import sys

from ..errors import UsageError


def stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def ask(prompt: str, quiet: bool = False) -> str:
    """Ask on the terminal (no echo), or read one line from stdin when it is not a terminal."""
    if stdin_is_terminal():
        import getpass

        try:
            return getpass.getpass(prompt, stream=sys.stderr)
        except EOFError:
            return ""
    if not quiet:
        print("reading repository password from stdin", file=sys.stderr)
    line = sys.stdin.buffer.readline() if sys.stdin else b""
    return line.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


def ask_new(prompt: str, quiet: bool = False) -> str:
    """A new password: twice on a terminal, once from stdin."""
    first = ask(prompt, quiet)
    if stdin_is_terminal():
        if ask("enter password again: ", quiet) != first:
            raise UsageError("passwords do not match")
    if not first:
        raise UsageError("an empty password is not a password")
    return first
