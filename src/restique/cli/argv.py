"""restic accepts global flags anywhere on the command line (cobra); click wants group
options before the subcommand. Move every global flag to the front, leaving the rest (and
everything after `--`) in place."""
from typing import List, Tuple

# flag -> takes a value
GLOBAL_FLAGS = {
    "-r": True, "--repo": True, "--repository-file": True,
    "-p": True, "--password-file": True, "--password-command": True, "--key-hint": True,
    "--json": False, "-q": False, "--quiet": False, "-v": False, "--verbose": False,
    "--no-lock": False, "--no-cache": False, "--cleanup-cache": False, "--cache-dir": True,
    "--compression": True, "--pack-size": True, "--retry-lock": True,
    "-o": True, "--option": True, "--limit-upload": True, "--limit-download": True,
    "--insecure-tls": False, "--cacert": True, "--tls-client-cert": True, "--no-extra-verify": False,
    "--insecure-no-password": False,
}


def _split(token: str) -> Tuple[str, bool]:
    """(flag name, value attached with '=')."""
    if token.startswith("--") and "=" in token:
        return token.split("=", 1)[0], True
    return token, False


def hoist_global_flags(argv: List[str]) -> List[str]:
    front: List[str] = []
    rest: List[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        name, attached = _split(token)
        if name in GLOBAL_FLAGS:
            front.append(token)
            if GLOBAL_FLAGS[name] and not attached and i + 1 < len(argv):
                front.append(argv[i + 1])
                i += 1
        elif token.startswith("-v") and set(token[1:]) == {"v"}:
            front.append(token)  # -vv, -vvv
        elif len(token) > 2 and token[:2] in ("-r", "-p", "-o") and not token.startswith("--"):
            front.append(token)  # -r/srv/repo
        else:
            rest.append(token)
        i += 1
    return front + rest
