#!/usr/bin/env bash
# Installs restique and shows the main job on a local repository in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RESTIC_REPOSITORY="$work/repo"
export RESTIC_PASSWORD="demo-password"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step restique version
step restique init
step restique cat config
printf 'second-password\n' > "$work/pw2"
step restique key add --new-password-file "$work/pw2" --user demo --host demo-host
step restique key list
step restique list keys
step restique --password-file "$work/pw2" cat config
step restique unlock
echo
echo "demo finished: repository at $RESTIC_REPOSITORY (removed on exit)"
