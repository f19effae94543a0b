#!/usr/bin/env bash
# Installs restique and shows the main job on a local repository in a temporary folder:
# init, two backups, snapshots, a restore, and a byte-for-byte comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh all
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RESTIC_REPOSITORY="$work/repo"
export RESTIC_PASSWORD="demo-password"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# something to back up: a few folders of text and binary files, a symlink
src="$work/documents"
mkdir -p "$src/letters" "$src/photos" "$src/notes/2026"
for i in $(seq 1 20); do printf 'Letter %s\nDear reader, ...\n' "$i" > "$src/letters/letter-$i.txt"; done
head -c 3000000 /dev/urandom > "$src/photos/holiday.jpg"
head -c 200000 /dev/urandom > "$src/photos/cat.png"
echo "buy milk" > "$src/notes/2026/todo.md"
ln -s ../letters/letter-1.txt "$src/notes/first-letter"

step restique version
step restique init
step restique backup --tag demo "$src"
echo "and call the bank" >> "$src/notes/2026/todo.md"
head -c 1000000 /dev/urandom > "$src/photos/new.jpg"
step restique backup --tag demo "$src"
step restique snapshots
step restique backup --stdin --stdin-filename notes.txt <<< "a stream read from stdin"
step restique restore latest --target "$work/restored" --path "$src"
step diff -r "$src" "$work/restored$src"
echo "restored tree is identical to the source"
step restique key list
step restique cat config
echo
echo "demo finished: repository at $RESTIC_REPOSITORY (removed on exit)"
