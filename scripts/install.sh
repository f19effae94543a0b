#!/usr/bin/env bash
# Installs what restique needs on Debian 12 into ./.venv: system packages (restic is the
# reference the interoperability tests compare against), then the package itself.
# Usage: scripts/install.sh [extra]   e.g. scripts/install.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
packages=(python3 python3-venv python3-dev gcc libssl-dev libzstd-dev restic e2fsprogs attr)
# mount loads libfuse3 (fuse3); the slow-source script's pyfuse3 builds against libfuse3-dev; the tests drive the web page with chromium and
# read the WebDAV share with rclone
packages+=(fuse3 libfuse3-dev pkg-config)
# (and the remote backends against rclone's REST server and OpenSSH's sshd; strace fails chosen system
# calls of one path, for the read-failure tests; groff renders the pages `generate --man` writes)
if [ "$extra" = "test" ]; then packages+=(chromium rclone openssh-server openssh-client strace davfs2 gvfs-backends gvfs-daemons dbus-daemon libglib2.0-bin groff-base); fi
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
if [ -n "$extra" ]; then
    .venv/bin/python -m pip install -q -e ".[$extra]"
else
    .venv/bin/python -m pip install -q -e .
fi
# an editable install compiles nothing of the project itself; where Python may not write
# bytecode (PYTHONDONTWRITEBYTECODE), every command would compile all its modules at start
.venv/bin/python -m compileall -q src/restique >/dev/null
