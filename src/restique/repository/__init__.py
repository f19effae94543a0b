"""Repository layer: restic's on-disk format on top of a storage backend."""
