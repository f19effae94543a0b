"""restique key list|add|remove|passwd: manage the passwords that open a repository."""
import click

from .output import print_json, table


@click.group()
def key():
    """Manage keys (passwords)."""


@key.command("list")
@click.pass_obj
def list_keys(opts):
    """List keys (passwords)."""
    from ..repository import keys as keyfiles

    repo = opts.open_for_reading()
    rows = []
    for key_id in keyfiles.list_key_ids(repo.backend):
        try:
            k = keyfiles.load_key(repo.backend, key_id)
        except Exception as exc:  # one damaged key file must not hide the others
            rows.append((key_id, None, str(exc)))
            continue
        rows.append((key_id, k, None))
    if opts.json:
        out = []
        for key_id, k, err in rows:
            if k is None:
                continue
            created = k.created_time
            out.append({
                "current": key_id == repo.key_id,
                "id": key_id[:8],
                "userName": k.username,
                "hostName": k.hostname,
                "created": created.local_string() if created else k.created,
            })
        print_json(out)
        return
    body = []
    for key_id, k, err in rows:
        mark = "*" if key_id == repo.key_id else " "
        if k is None:
            body.append((mark + key_id[:8], "", "", f"damaged: {err}"))
            continue
        created = k.created_time
        body.append((mark + key_id[:8], k.username, k.hostname, created.local_string() if created else k.created))
    print(table((" ID", "User", "Host", "Created"), body), end="")


def _new_password(opts, new_password_file):
    from . import password as passwords
    from ..errors import UsageError
    from ..operations.open_repo import password_from_file

    if new_password_file:
        pw = password_from_file(new_password_file)
    else:
        pw = passwords.ask_new("enter new password: ", opts.quiet)
    if not pw:
        raise UsageError("an empty password is not a password")
    return pw


def _add_key(opts, repo, new_password_file, user, host):
    from ..repository import keys as keyfiles

    pw = _new_password(opts, new_password_file)
    key_id = keyfiles.create_key(repo.backend, repo.key, pw, username=user, hostname=host)
    if not opts.quiet:
        print(f"saved new key with ID {key_id}")
    return key_id


@key.command("add")
@click.option("--new-password-file", help="file from which to read the new password")
@click.option("--new-insecure-no-password", is_flag=True, hidden=True)
@click.option("--user", default=None, help="the username for new key")
@click.option("--host", default=None, help="the hostname for new key")
@click.pass_obj
def add(opts, new_password_file, new_insecure_no_password, user, host):
    """Add a new key (password) to the repository."""
    if new_insecure_no_password:
        from ..errors import UsageError

        raise UsageError("--new-insecure-no-password is not supported: every key needs a password")
    repo = opts.open_for_appending()
    _add_key(opts, repo, new_password_file, user, host)


@key.command("remove")
@click.argument("key_id", required=False)
@click.pass_obj
def remove(opts, key_id):
    """Remove a key (password) from the repository."""
    from ..errors import RestiqueError, UsageError
    from ..model.ids import find_by_prefix
    from ..repository import keys as keyfiles

    if not key_id:
        raise UsageError("key remove needs one argument: the ID of the key to remove")
    repo = opts.open_exclusively()
    full = find_by_prefix(key_id, keyfiles.list_key_ids(repo.backend))
    if full == repo.key_id:
        raise RestiqueError("refusing to remove key currently used to access repository")
    repo.remove("key", full)
    if not opts.quiet:
        print(f"removed key {full}")


@key.command("passwd")
@click.option("--new-password-file", help="file from which to read the new password")
@click.option("--user", default=None, help="the username for the new key")
@click.option("--host", default=None, help="the hostname for the new key")
@click.pass_obj
def passwd(opts, new_password_file, user, host):
    """Change the password of the key in use: a new key replaces it."""
    from ..repository import keys as keyfiles

    repo = opts.open_exclusively()
    old = keyfiles.load_key(repo.backend, repo.key_id)
    _add_key(opts, repo, new_password_file, old.username if user is None else user,
             old.hostname if host is None else host)
    repo.remove("key", repo.key_id)
