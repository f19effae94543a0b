"""restique generate: man pages and shell completion files, as restic writes them."""
import os
import sys

import click

# the shells click completes, in the order restic writes their files
SHELLS = ("bash", "fish", "zsh")


@click.command()
@click.option("--man", "man_dir", default="", metavar="directory", help="write man pages to directory")
@click.option("--bash-completion", default="", metavar="file", help="write bash completion file (- for stdout)")
@click.option("--fish-completion", default="", metavar="file", help="write fish completion file (- for stdout)")
@click.option("--zsh-completion", default="", metavar="file", help="write zsh completion file (- for stdout)")
@click.argument("args", nargs=-1)
@click.pass_context
def generate(ctx, man_dir, bash_completion, fish_completion, zsh_completion, args):
    """Generate manual pages and auto-completion files (bash, fish, zsh).

    The "generate" command writes automatically generated files (like the man pages
    and the auto-completion files for bash, fish and zsh).

    \b
    EXIT STATUS
    ===========
    Exit status is 0 if the command was successful, and non-zero if there was any error.
    """
    from ..errors import UsageError

    if args:
        raise UsageError("the generate command expects no arguments, only options - "
                         "please see `restique help generate` for usage and flags")
    files = dict(zip(SHELLS, (bash_completion, fish_completion, zsh_completion)))
    if not man_dir and not any(files.values()):
        raise UsageError("nothing to do, please specify at least one output file/dir")
    if list(files.values()).count("-") > 1:
        raise UsageError("the generate command can generate shell completions to stdout for single shell only")
    root = ctx.find_root().command
    # what is said goes to stderr when a completion script goes to stdout
    say = sys.stderr if "-" in files.values() else sys.stdout
    if man_dir:
        _write_man_pages(root, man_dir, say)
    for shell, path in files.items():
        if path:
            print(f"writing {shell} completion file to {path}", file=say)
            _write(path, _completion_script(root, shell))


def _write_man_pages(root, directory: str, say) -> None:
    from .manpages import man_pages

    print(f"writing man pages to directory {directory}", file=say)
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, "No such file or directory", directory)
    for name, text in man_pages(root):
        _write(os.path.join(directory, name), text)


def _completion_script(root, shell: str) -> str:
    """click's completion script: it calls `restique` back with _RESTIQUE_COMPLETE set."""
    from click.shell_completion import get_completion_class

    completion = get_completion_class(shell)(root, {}, "restique", "_RESTIQUE_COMPLETE")
    return completion.source()


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
