"""Settings that reach every backend: `-o scheme.key=value` extended options, TLS files and
bandwidth limits. The CLI fills one BackendOptions; library users may build their own."""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple

from ..errors import UsageError

STUCK_TIMEOUT = 300.0  # restic's default --stuck-request-timeout, in seconds


class Option(NamedTuple):
    """One extended option of a backend (`-o scheme.name=value`): how its text is read, its
    value when not given, and what `restique options` says of it (restic's words)."""

    parse: Callable[[str], Any]
    default: Any
    help: str


def parse_extended(pairs: Iterable[str]) -> Dict[str, str]:
    """`key=value` strings as a dict, as restic parses `-o`: a bare key has an empty value."""
    parsed: Dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        key = key.strip()
        if not key:
            raise UsageError("empty key is not a valid option")
        if key in parsed:
            raise UsageError(f'key "{key}" present more than once')
        parsed[key] = value.strip()
    return parsed


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f'strconv.ParseUint: parsing "{text}": invalid syntax') from None
    if value <= 0:
        raise UsageError("capacity must be a positive number")
    return value


@dataclass
class BackendOptions:
    """What reaches every backend (a docstring also spares the dataclass an inspect.signature)."""
    extended: Dict[str, str] = field(default_factory=dict)  # "rest.connections" -> "5"
    cacert: Tuple[str, ...] = ()  # PEM files of root certificates, trusted instead of the system's
    tls_client_cert: Optional[str] = None  # one PEM file holding certificate and key
    insecure_tls: bool = False
    limit_upload: int = 0  # KiB/s, 0 = unlimited
    limit_download: int = 0
    retry_max_time: float = 15 * 60.0  # seconds a failing operation is retried, as restic
    retry_max_tries: int = 10
    http_user_agent: str = ""  # sent by the HTTP backends (REST, S3, rclone) instead of the default
    stuck_request_timeout: float = STUCK_TIMEOUT  # seconds an HTTP request may go without progress

    def for_scheme(self, scheme: str, known: Mapping[str, Option]) -> dict:
        """The options under `scheme.` parsed by known[name]; options of other schemes are
        ignored, unknown ones under this scheme refused (both as restic does)."""
        values = {name: option.default for name, option in known.items()}
        prefix = scheme + "."
        for key, text in self.extended.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if name not in known:
                raise UsageError(f"option {key} is not known")
            values[name] = known[name].parse(text)
        return values
