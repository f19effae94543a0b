"""How prune tells what it does: a callback object the caller passes (the CLI prints, a
library user may log or ignore). Every method does nothing by default."""


class Counter:
    """A progress counter of one phase: add() as items are done, done() at the end."""

    def add(self, n: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


class PruneReport:
    """Callbacks, with restic's verbosity levels in mind:

    - message(text): the phase lines restic prints by default ("loading indexes...")
    - detail(text): what restic prints with -v (statistics, pack lists)
    - debug(text): what restic prints with -vvv (every removed file)
    - warning(text): what restic writes to stderr and goes on after
    - counter(description, total): a progress counter ("snapshots", "packs processed")
    """

    def message(self, text: str) -> None:
        pass

    def detail(self, text: str) -> None:
        pass

    def debug(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def counter(self, description: str, total: int) -> Counter:
        return Counter()
