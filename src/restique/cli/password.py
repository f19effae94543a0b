"""Where the repository password comes from, in restic's order and with its messages."""
import os
import shlex
import subprocess
import sys
from typing import Optional

from ..errors import RestiqueError, UsageError


class PasswordError(RestiqueError):
    pass


def _from_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="surrogateescape").strip()
    except FileNotFoundError:
        raise PasswordError(f"Resolving password failed: {path} does not exist") from None
    except OSError as exc:
        raise PasswordError(f"Resolving password failed: {path}: {exc.strerror}") from None


def _from_command(command: str) -> str:
    """The command's standard output, stripped. Its output is never part of a message (it is
    the password); its standard error goes to the user's, as restic does."""
    try:
        args = shlex.split(command)
    except ValueError as exc:
        raise PasswordError(f"Resolving password failed: {exc}") from None
    if not args:
        raise PasswordError("Resolving password failed: command string is empty")
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise PasswordError(f"Resolving password failed: {_exec_error(args[0], exc)}") from None
    if proc.returncode < 0:
        raise PasswordError(f"Resolving password failed: signal: {_signal_name(-proc.returncode)}")
    if proc.returncode != 0:
        raise PasswordError(f"Resolving password failed: exit status {proc.returncode}")
    return proc.stdout.decode("utf-8", errors="surrogateescape").strip()


def _exec_error(program: str, exc: OSError) -> str:
    """Go's words for a command that could not be started."""
    if isinstance(exc, FileNotFoundError) and "/" not in program:
        return f'exec: "{program}": executable file not found in $PATH'
    text = exc.strerror or str(exc)
    return f"fork/exec {program}: {text[:1].lower() + text[1:]}"


def _signal_name(number: int) -> str:
    """Go's name of a signal that ended a command ("killed", "terminated" ...)."""
    import signal

    try:
        text = signal.strsignal(number) or str(number)
    except ValueError:
        return f"signal {number}"
    return text[:1].lower() + text[1:]


def configured_password(password_file: Optional[str], password_command: Optional[str],
                        env_name: str = "RESTIC_PASSWORD") -> Optional[str]:
    """The password from flags or environment, or None when the user must be asked."""
    if password_file and password_command:
        raise PasswordError("Resolving password failed: Password file and command are mutually exclusive options")
    if password_command:
        return _from_command(password_command)
    if password_file:
        return _from_file(password_file)
    return os.environ.get(env_name) or None


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
