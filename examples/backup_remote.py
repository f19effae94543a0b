#!/usr/bin/env python3
"""Back up a folder to a (remote) repository, list its snapshots and restore one file into
memory, with the restique library.

    python examples/backup_remote.py REPOSITORY FOLDER FILE_IN_FOLDER --password-file PW

REPOSITORY is any location restique opens: `rest:http://host:8000/repo/`, `sftp:host:/repo`,
`s3:...`, or a local folder. The repository is created when it does not exist yet.
"""
import argparse
import os
import sys
from typing import List, Optional

import restique


def open_or_create(location: str, password_file: str) -> restique.Repository:
    try:
        return restique.open(location, password_file=password_file)
    except restique.RepositoryNotFound:
        return restique.init(location, password_file=password_file)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="back up a folder and read one file back")
    parser.add_argument("repository")
    parser.add_argument("folder")
    parser.add_argument("file", help="a file below folder, to read back from the snapshot")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--tag", action="append", default=[])
    args = parser.parse_args(argv)

    try:
        with open_or_create(args.repository, args.password_file) as repo:
            files = []
            result = restique.backup(repo, [args.folder], restique.BackupRequest(tags=args.tag),
                                     progress=lambda path, kind, item: files.append(path) if kind == "file" else None)
            print(f"snapshot {result.snapshot.short_id} saved: {len(files)} files, "
                  f"{result.summary['data_added']} new bytes")
            for sn in restique.snapshots(repo):
                print(sn.short_id, sn.time.rfc3339(), ",".join(sn.tags or []), " ".join(sn.paths or []))
            inside = os.path.join(os.path.abspath(args.folder), args.file)
            content = restique.read_file(repo, result.snapshot, inside)
            print(f"{args.file}: {len(content)} bytes restored into memory")
    except restique.RestiqueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
