"""Serving a SnapshotFS at a mountpoint until it is unmounted or a signal arrives."""
import gc
import os
import signal
from contextlib import contextmanager
from typing import Callable, Optional

import pyfuse3
import trio

from ..errors import RestiqueError
from ..operations.snapshot_fs import SnapshotFS
from .ops import SnapshotOperations

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Each kernel request leaves a few hundred short-lived objects behind (trio's scheduling),
# while listings and trees kept for the kernel grow by hundreds of thousands of long-lived
# ones: with Python's default of 700, young collections run every few requests and full
# collections walk the caches again and again (a tenth of a first `find`).
YOUNG_COLLECTION_THRESHOLD = 50_000


def mount_options(fsname: str, allow_other: bool, no_default_permissions: bool) -> set:
    options = {"ro", f"fsname={fsname}", "subtype=restique"}
    if not no_default_permissions:
        options.add("default_permissions")  # the kernel checks the stored modes
    if allow_other:
        options.add("allow_other")
    return options


def serve(fs: SnapshotFS, mountpoint: str, options: set,
          on_mounted: Optional[Callable[[], None]] = None) -> Optional[int]:
    """Mount fs read-only at mountpoint and answer requests. Returns None when the
    filesystem was unmounted from outside, or the number of the signal that stopped it (the
    filesystem is then unmounted here)."""
    if not os.path.exists("/dev/fuse"):
        raise RestiqueError("FUSE is not available on this system (no /dev/fuse)")
    ops = SnapshotOperations(fs)
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as exc:
        raise RestiqueError(f"unable to mount {mountpoint}: {exc}") from None
    stopped_by = []
    try:
        with _collections_for_serving():
            trio.run(_serve_until_signal, stopped_by, on_mounted, restrict_keyboard_interrupt_to_checkpoints=True)
    finally:
        ops.listings.close()
        pyfuse3.close(unmount=bool(stopped_by))
    return stopped_by[0] if stopped_by else None


@contextmanager
def _collections_for_serving():
    """Fewer garbage collections while serving; what was loaded before (the index, the
    snapshot list) is moved out of the collector's sight, as it lives until the unmount."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _serve_until_signal(stopped_by: list, on_mounted) -> None:
    async with trio.open_nursery() as nursery:
        async def watch_signals():
            with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
                async for signum in signals:
                    stopped_by.append(signum)
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch_signals)
        if on_mounted is not None:
            on_mounted()
        await pyfuse3.main()
        nursery.cancel_scope.cancel()  # unmounted from outside: stop watching signals
