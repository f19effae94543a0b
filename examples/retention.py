#!/usr/bin/env python3
"""Apply a retention policy and free the space of the snapshots it removes, with the
restique library (what `restique forget --keep-daily 7 --keep-weekly 4 --prune` does).

    python examples/retention.py REPOSITORY --password-file PW --keep-last 3 --keep-daily 7
"""
import argparse
import sys
from typing import List, Optional

import restique


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="forget snapshots by a policy, then prune")
    parser.add_argument("repository")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--keep-last", type=int, default=0)
    parser.add_argument("--keep-daily", type=int, default=0)
    parser.add_argument("--keep-weekly", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    policy = restique.KeepPolicy(last=args.keep_last, daily=args.keep_daily, weekly=args.keep_weekly)
    try:
        with restique.open(args.repository, password_file=args.password_file) as repo:
            result = restique.forget(repo, restique.ForgetOptions(policy=policy, dry_run=args.dry_run))
            for group in result.groups:
                print(f"host {group.key.hostname}, paths {group.key.paths}: keep {len(group.keep)}, "
                      f"remove {len(group.remove)}")
            for snapshot_id in result.remove_ids:
                print(f"{'would remove' if args.dry_run else 'removed'} {snapshot_id[:8]}")
            if result.removed:
                plan = restique.prune(repo)
                print(f"prune: {plan.stats.blobs.remove_total} blobs removed")
    except restique.RestiqueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
