"""Model layer: repository objects as restic encodes them (ids, Go-compatible JSON, snapshots)."""
