"""prune's statistics: blob counts, sizes and pack counts, in the fields and order of
current restic's `prune --json` summary (doc/075_scripting.rst)."""
from dataclasses import asdict, dataclass, field


@dataclass
class BlobCounts:
    used: int = 0
    duplicate: int = 0
    unused: int = 0
    total: int = 0
    repack: int = 0
    repack_remove: int = 0
    remove: int = 0
    remove_total: int = 0
    remaining: int = 0


@dataclass
class ByteCounts:
    used: int = 0
    duplicate: int = 0
    unused: int = 0
    unreferenced: int = 0
    uncompressed: int = 0
    total: int = 0
    repack: int = 0
    repack_remove: int = 0
    remove: int = 0
    remove_total: int = 0
    remaining: int = 0
    remaining_unused: int = 0


@dataclass
class PackCounts:
    used: int = 0
    unused: int = 0
    partly_used: int = 0
    unreferenced: int = 0
    total: int = 0
    keep: int = 0
    repack: int = 0
    remove: int = 0
    remove_total: int = 0


@dataclass
class PruneStats:
    blobs: BlobCounts = field(default_factory=BlobCounts)
    bytes: ByteCounts = field(default_factory=ByteCounts)
    packs: PackCounts = field(default_factory=PackCounts)

    def add_totals(self) -> None:
        """The derived fields, once the plan is made."""
        b, s, p = self.blobs, self.bytes, self.packs
        b.total = b.used + b.unused + b.duplicate
        b.remove_total = b.remove + b.repack_remove
        b.remaining = b.total - b.remove_total
        s.total = s.used + s.duplicate + s.unused + s.unreferenced
        s.remove_total = s.remove + s.repack_remove + s.unreferenced
        s.remaining = s.total - s.remove_total
        s.remaining_unused = s.duplicate + s.unused - s.remove - s.repack_remove
        p.total = p.used + p.partly_used + p.unused + p.unreferenced
        p.remove_total = p.unreferenced + p.remove

    def to_json(self) -> dict:
        return {"message_type": "summary", "blobs": asdict(self.blobs), "bytes": asdict(self.bytes),
                "packfiles": asdict(self.packs)}
