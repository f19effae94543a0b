"""What prune may do: restic's prune flags as one options object, with restic's parsing of
sizes (`10k`, `5M`) and of the tolerated unused space (`5%`, `2G`, `unlimited`)."""
import math
import re
from dataclasses import dataclass
from typing import Optional, Union

from ...errors import UsageError

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_MAX_UINT64 = (1 << 64) - 1


def parse_bytes(text: str) -> int:
    """A size as restic takes it: an integer with an optional b/k/m/g/t suffix (1024-based).
    ValueError with Go's wording when it is not one; negative sizes are refused (current
    restic; 0.14 wrapped them around to huge numbers)."""
    if not text:
        raise ValueError("expected size, got empty string")
    factor = _UNITS.get(text[-1].lower())
    digits = text[:-1] if factor else text
    if not _INT.fullmatch(digits):
        raise ValueError(f'strconv.ParseInt: parsing "{digits}": invalid syntax')
    value = int(digits) * (factor or 1)
    if value < 0 or value >= 1 << 63:
        raise ValueError(f'ParseSize: "{digits}": value out of range')
    return value


@dataclass
class PruneOptions:
    """restic's prune flags. Sizes may be given as numbers of bytes or as restic's strings.

    max_unused: the unused space tolerated after pruning: "5%" of the used data (default),
    an absolute size ("100M"), or "unlimited".
    max_repack_size: stop choosing packs to repack once this much would be repacked.
    repack_cacheable_only: repack only tree packs (the ones a cache holds).
    repack_small: also repack packs below 80% of the target pack size (restic 0.14's
    default limit is 4% of it).
    repack_smaller_than: repack packs below this size (current restic).
    repack_uncompressed: compress the uncompressed blobs of a format 2 repository.
    """

    dry_run: bool = False
    max_unused: str = "5%"
    max_repack_size: Optional[Union[int, str]] = None
    repack_cacheable_only: bool = False
    repack_small: bool = False
    repack_smaller_than: Optional[Union[int, str]] = None
    repack_uncompressed: bool = False

    def validate(self) -> None:
        """UsageError with restic's message for a value restic refuses."""
        self.max_unused_bytes(0)
        self.max_repack_bytes()
        self.small_pack_bytes()

    def max_unused_bytes(self, used: int) -> int:
        """The unused bytes tolerated after pruning, for `used` bytes of used blobs."""
        text = str(self.max_unused).strip()
        if not text:
            raise UsageError(f'invalid value for --max-unused: "{self.max_unused}"')
        if text == "unlimited":
            return _MAX_UINT64
        if text.endswith("%"):
            number = text[:-1]
            if not _FLOAT.fullmatch(number):
                raise UsageError(f'invalid percentage "{self.max_unused}" passed for --max-unused: '
                                 f'strconv.ParseFloat: parsing "{number}": invalid syntax')
            percent = float(number)
            if percent < 0:
                raise UsageError("percentage for --max-unused must be positive")
            if percent >= 100 or not math.isfinite(percent):
                raise UsageError("percentage for --max-unused must be below 100%")
            return int(percent / (100 - percent) * used)
        return _size(text, "--max-unused", self.max_unused)

    def max_repack_bytes(self) -> int:
        if self.max_repack_size is None or self.max_repack_size == "":
            return _MAX_UINT64
        return _size(self.max_repack_size, "--max-repack-size")

    def small_pack_bytes(self) -> int:
        """--repack-smaller-than in bytes, 0 when not given."""
        if self.repack_smaller_than is None or self.repack_smaller_than == "":
            return 0
        size = _size(self.repack_smaller_than, "--repack-smaller-than")
        if size <= 0:
            raise UsageError("--repack-smaller-than must be larger than zero")
        return size


def _size(value: Union[int, str], flag: str, shown: Optional[str] = None) -> int:
    if isinstance(value, int):
        if value < 0:
            raise UsageError(f'invalid number of bytes "{value}" for {flag}: must not be negative')
        return value
    try:
        return parse_bytes(value.strip())
    except ValueError as exc:
        raise UsageError(f'invalid number of bytes "{shown if shown is not None else value}" for {flag}: {exc}') from None
