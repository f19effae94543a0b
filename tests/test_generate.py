"""restique generate: man pages of every command (made from the commands themselves) and the
bash, fish and zsh completion scripts, which call restique back to complete."""
import re
import subprocess

import pytest

from conftest import clean_env, restique_cmd, run_restique as restique
from restique.cli.main import COMMANDS


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base = tmp_path_factory.mktemp("generate")
    (base / "man").mkdir()
    proc = restique(None, "generate", "--man", base / "man", "--zsh-completion", base / "z.sh",
                    "--bash-completion", base / "b.sh", "--fish-completion", base / "f.fish", cwd=base)
    return base, proc


def test_what_it_says_as_restic(written):
    base, proc = written
    assert proc.stdout.decode().splitlines() == [
        f"writing man pages to directory {base / 'man'}", f"writing bash completion file to {base / 'b.sh'}",
        f"writing fish completion file to {base / 'f.fish'}", f"writing zsh completion file to {base / 'z.sh'}"]


def test_a_man_page_for_every_command_and_subcommand(written):
    base, _ = written
    names = {p.name for p in (base / "man").iterdir()}
    expected = {"restique.1"} | {f"restique-{name}.1" for name in COMMANDS}
    expected |= {f"restique-key-{sub}.1" for sub in ("add", "list", "passwd", "remove")}
    expected |= {f"restique-repair-{sub}.1" for sub in ("index", "packs", "snapshots")}
    assert expected <= names, expected - names


def test_a_page_lists_the_commands_options_and_the_inherited_ones(written):
    base, _ = written
    page = (base / "man" / "restique-backup.1").read_text()
    assert page.startswith('.nh\n.TH "restique backup" "1"')
    sections = re.findall(r"^\.SH (.+)$", page, re.M)
    assert sections == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "OPTIONS INHERITED FROM PARENT COMMANDS",
                        "SEE ALSO"]
    assert "restique-backup \\- Create a new backup of files and/or directories." in page
    options, inherited = page.split(".SH OPTIONS INHERITED FROM PARENT COMMANDS")
    for flag in ("exclude", "files\\-from", "stdin\\-filename", "group\\-by", "read\\-concurrency"):
        assert f"\\fB\\-\\-{flag}\\fP" in options
    for flag in ("repo", "password\\-file", "cache\\-dir", "stuck\\-request\\-timeout"):
        assert f"\\fB\\-\\-{flag}\\fP" in inherited
    assert "\\fBrestique(1)\\fP" in page.split(".SH SEE ALSO")[1]
    sub = (base / "man" / "restique-key-add.1").read_text()
    assert "\\fBrestique-key(1)\\fP" in sub.split(".SH SEE ALSO")[1]  # below key, which is below restique


def test_every_page_renders_without_warnings(written):
    base, _ = written
    for page in sorted((base / "man").iterdir()):
        out = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True)
        assert out.returncode == 0 and out.stderr == "", (page.name, out.stderr)


def test_completion_scripts_call_restique_back(written):
    base, _ = written
    for name, shell in (("b.sh", "bash"), ("f.fish", "fish"), ("z.sh", "zsh")):
        assert "_RESTIQUE_COMPLETE" in (base / name).read_text(), shell
    env = clean_env(_RESTIQUE_COMPLETE="bash_complete", COMP_WORDS="restique backup --exclude-i", COMP_CWORD="2")
    proc = subprocess.run(restique_cmd(), env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.decode().split() == ["plain,--exclude-if-present"]
    env.update(COMP_WORDS="restique snap", COMP_CWORD="1")
    proc = subprocess.run(restique_cmd(), env=env, capture_output=True, timeout=60)
    assert proc.stdout.decode().split() == ["plain,snapshots"]


def test_a_script_to_stdout_and_what_is_said_to_stderr():
    proc = restique(None, "generate", "--zsh-completion", "-")
    assert proc.stdout.decode().startswith("#compdef restique")
    assert proc.stderr.decode() == "writing zsh completion file to -\n"


@pytest.mark.parametrize("args, message", [
    ((), "Fatal: nothing to do, please specify at least one output file/dir"),
    (("--bash-completion", "-", "--fish-completion", "-"),
     "Fatal: the generate command can generate shell completions to stdout for single shell only"),
    (("extra",), "Fatal: the generate command expects no arguments, only options - please see "
                 "`restique help generate` for usage and flags"),
    (("--man", "no-such-folder"), "Fatal: No such file or directory: no-such-folder"),
])
def test_bad_input(tmp_path, args, message):
    proc = restique(None, "generate", *args, check=False, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == message
    assert list(tmp_path.iterdir()) == []
