"""Amazon S3 and S3-compatible stores (MinIO, SeaweedFS, Ceph, ...).

Locations as restic parses them: `s3:host/bucket/prefix` and `s3://host/bucket/prefix` (https),
`s3:http(s)://host[:port]/bucket/prefix`. Objects are laid out as in every restic backend:
`prefix/config`, `prefix/keys/ID`, `prefix/data/12/12ab...`.

Credentials and region as the AWS tools find them (s3_credentials), the region also from
`-o s3.region`. Requests are our own (s3_client): botocore cost a few hundred milliseconds and
~30 MiB of imports a command and a few milliseconds of Python a request, several times what
the requests themselves cost on a nearby store. The retry wrapper composed around every remote
backend retries, and knows which errors are permanent.
"""
import base64
import hashlib
import posixpath
import threading
from dataclasses import dataclass
from typing import Iterator, Optional
from urllib.parse import urlsplit

import urllib3

from ..errors import AlreadyExists, UsageError
from .base import (BackendError, BackendShortRead, FileType, PermanentBackendError, check_range,
                   not_found)
from .options import BackendOptions, Option, positive_int
from .parts import PartsBody
from .rest import failure_reason
from .s3_client import S3Client, S3Error
from .s3_credentials import Credentials, NoCredentials, configured_region

# Above this size a file goes up in parts (S3's single PUT has a 5 GiB limit, and parts of a
# large pack upload side by side); packs are 16 MiB by default, so most files take one PUT.
MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # restic keeps metadata out of these classes
_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_PERMANENT_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                    "InvalidBucketName", "InvalidRange", "InvalidStorageClass", "400", "InvalidArgument",
                    "AuthorizationHeaderMalformed", "InvalidToken", "ExpiredToken", "AllAccessDisabled"}


def _bool_option(text: str) -> bool:
    if text.lower() in ("", "true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise UsageError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _lookup_style(text: str) -> str:
    style = text.lower()
    if style not in ("", "auto", "dns", "path"):
        raise UsageError(f'bad bucket-lookup style "{text}" must be "auto", "path" or "dns"')
    return style or "auto"


OPTIONS = {
    "connections": Option(positive_int, 5, "set a limit for the number of concurrent connections (default: 5)"),
    "region": Option(str, "", "set region"),
    "bucket-lookup": Option(_lookup_style, "auto", "bucket lookup style: 'auto', 'dns', or 'path'"),
    "storage-class": Option(str, "", "set S3 storage class (STANDARD, STANDARD_IA, ONEZONE_IA, "
                                     "INTELLIGENT_TIERING or REDUCED_REDUNDANCY)"),
    "list-objects-v1": Option(_bool_option, False, "use deprecated V1 api for ListObjects calls"),
    "unsafe-anonymous-auth": Option(_bool_option, False, "use anonymous authentication"),
}


@dataclass
class S3Location:
    endpoint: str  # host[:port]
    bucket: str
    prefix: str  # "" puts the repository at the bucket's top
    use_http: bool = False


def parse_location(location: str) -> S3Location:
    """The parts of an `s3:...` location, as restic reads them."""
    rest = location[3:] if location.startswith("s3:") else location
    if rest.startswith(("http://", "https://")):
        url = urlsplit(rest)
        if not url.path or url.path == "/":
            raise UsageError("s3: bucket name not found")
        bucket, _, prefix = url.path[1:].partition("/")
        return _checked(url.netloc, bucket, prefix, url.scheme == "http")
    if rest.startswith("//"):
        rest = rest[2:]
    endpoint, _, path = rest.partition("/")
    bucket, _, prefix = path.partition("/")
    return _checked(endpoint, bucket, prefix, False)


def _checked(endpoint: str, bucket: str, prefix: str, use_http: bool) -> S3Location:
    if not endpoint or not bucket:
        raise UsageError("s3: invalid format, host/region or bucket name not found")
    prefix = posixpath.normpath(prefix).lstrip("/") if prefix else ""
    return S3Location(endpoint, bucket, "" if prefix == "." else prefix, use_http)


def _virtual_hosted(style: str, where: S3Location) -> bool:
    """Whether the bucket goes in the host name (restic's bucket lookup): `auto` does so only
    for Amazon's own endpoints (as restic's client does), paths everywhere else, and for no
    bucket with a dot over https (no certificate covers that host name)."""
    if style != "auto":
        return style == "dns"
    amazon = where.endpoint.split(":")[0].endswith((".amazonaws.com", ".amazonaws.com.cn"))
    return amazon and (where.use_http or "." not in where.bucket)


class S3Backend:
    """A repository under a prefix of one bucket."""

    atomic_replace = True  # a PUT replaces an object at once; readers see the old or the new one

    def __init__(self, where: S3Location, location: Optional[str] = None, settings: Optional[dict] = None,
                 options: Optional[BackendOptions] = None):
        settings = {name: option.default for name, option in OPTIONS.items()} | (settings or {})
        self.where = where
        self.bucket = where.bucket
        self.location = location or f"s3:{where.endpoint}/{where.bucket}/{where.prefix}".rstrip("/")
        self.storage_class = settings["storage-class"]
        self.list_v1 = settings["list-objects-v1"]
        self.connections = settings["connections"]
        self._slots = threading.BoundedSemaphore(self.connections)
        options = options or BackendOptions()
        self.client = S3Client(
            where.endpoint, where.bucket, use_http=where.use_http,
            region=settings["region"] or configured_region() or "us-east-1",
            virtual_hosted=_virtual_hosted(settings["bucket-lookup"], where),
            connections=self.connections,
            credentials=None if settings["unsafe-anonymous-auth"] else Credentials(),
            user_agent=options.http_user_agent, stuck_timeout=options.stuck_request_timeout)

    # --- names and errors ---
    def _key(self, ftype: FileType, name: str) -> str:
        if ftype is FileType.CONFIG:
            parts = ("config",)
        elif ftype is FileType.PACK:
            parts = ("data", name[:2], name)
        else:
            parts = (ftype.folder, name)
        return "/".join((self.where.prefix,) + parts) if self.where.prefix else "/".join(parts)

    def _call(self, what: str, ftype: FileType, name: str, method: str, key: str = "", **request):
        """One request, holding a connection slot; its failure as a backend error."""
        return self._held(what, ftype, name, self.client.request, method, key, **request)

    def _held(self, what: str, ftype: FileType, name: str, send, *args, **kwargs):
        """send(*args, **kwargs) holding a connection slot; its failure as a backend error."""
        with self._slots:
            try:
                return send(*args, **kwargs)
            except (S3Error, NoCredentials, urllib3.exceptions.HTTPError, OSError) as exc:
                raise self._error(exc, what, ftype, name) from None

    def _error(self, exc: Exception, what: str, ftype: FileType, name: str) -> OSError:
        if isinstance(exc, NoCredentials):
            return PermanentBackendError(f"{what}: {exc} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
        if not isinstance(exc, S3Error):  # no answer: connection refused, reset, timed out
            return BackendError(f"{what}: {failure_reason(exc)}")
        code, message = exc.code, " ".join(exc.message.split())
        if code in _NOT_FOUND_CODES:
            return not_found(ftype, name, f"{self.bucket}/{self._key(ftype, name)}")
        text = f"{what} {self.bucket}/{self._key(ftype, name)}: {code}: {message}"
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            text += " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions)"
        return (PermanentBackendError if code in _PERMANENT_CODES else BackendError)(text)

    # --- the Backend protocol ---
    def create(self) -> None:
        """Make the bucket when it is missing (as restic does), then refuse an existing config."""
        try:
            self._call("HeadBucket", FileType.CONFIG, "", "HEAD")
        except FileNotFoundError:
            self._make_bucket()
        except PermanentBackendError as exc:
            if "403" not in str(exc) and "AccessDenied" not in str(exc):
                raise  # restic: a user allowed to write objects may not see the bucket itself
        try:
            self.stat(FileType.CONFIG, "")
        except FileNotFoundError:
            return
        raise AlreadyExists(f"create repository at {self.location} failed: config file already exists")

    def _make_bucket(self) -> None:
        region = self.client.region
        body = None
        if region and region != "us-east-1":
            body = ("<CreateBucketConfiguration><LocationConstraint>" + region
                    + "</LocationConstraint></CreateBucketConfiguration>").encode()
        try:
            self._call("CreateBucket", FileType.CONFIG, "", "PUT", body=body)
        except BackendError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise

    def save(self, ftype: FileType, name: str, data) -> None:
        body = PartsBody(data)  # sent part by part, again from the start on a retry: no joined copy
        headers = {"Content-Type": "application/octet-stream"}
        if self.storage_class and (ftype is FileType.PACK or self.storage_class not in ARCHIVE_CLASSES):
            headers["x-amz-storage-class"] = self.storage_class
        key = self._key(ftype, name)
        if len(body) < MULTIPART_THRESHOLD:
            # the store checks the MD5 and refuses a body damaged on the way (restic sends it too)
            digest = hashlib.md5()
            for part in body.parts:
                digest.update(part)
            headers["Content-MD5"] = base64.b64encode(digest.digest()).decode()
            self._call("Save", ftype, name, "PUT", key, headers=headers, body=body)
        else:
            self._held("Save", ftype, name, self.client.upload_in_parts, key, body.parts, PART_SIZE, headers,
                       self.connections)

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        if length == 0:  # an empty range is no range: still say whether the file is there
            if offset > self.stat(ftype, name):
                raise self._short(ftype, name, offset, length)
            return b""
        headers = {}
        if offset or length is not None:
            headers["Range"] = f"bytes={offset}-" + ("" if length is None else str(offset + length - 1))
        try:
            answer = self._call("Load", ftype, name, "GET", self._key(ftype, name), headers=headers)
        except PermanentBackendError as exc:
            if "InvalidRange" not in str(exc):
                raise
            if length is None and offset == self.stat(ftype, name):
                return b""  # the range starts just past the end: empty, not short
            raise self._short(ftype, name, offset, length) from None
        content = answer.data
        if headers and answer.status == 200:  # a store that ignores ranges sends the whole file
            content = content[offset:] if length is None else content[offset:offset + length]
        if length is not None and len(content) != length:
            raise self._short(ftype, name, offset, length, len(content))
        return content

    def _short(self, ftype, name, offset, length, got=None) -> BackendShortRead:
        detail = "offset is past the end" if got is None else f"got {got} bytes"
        return BackendShortRead(f"{ftype.label}/{name}: short read, wanted {length} bytes at {offset}, {detail}")

    def stat(self, ftype: FileType, name: str) -> int:
        answer = self._call("Stat", ftype, name, "HEAD", self._key(ftype, name))
        size = answer.headers.get("Content-Length", "")
        if not size.isdigit():
            raise BackendError(f"Stat {self.bucket}/{self._key(ftype, name)}: the store sent no valid Content-Length")
        return int(size)

    def remove(self, ftype: FileType, name: str) -> None:
        self.stat(ftype, name)  # S3 deletes a missing object without a word; the contract says not found
        self._call("Remove", ftype, name, "DELETE", self._key(ftype, name))

    def list(self, ftype: FileType) -> Iterator[tuple]:
        if ftype is FileType.CONFIG:
            return
        folder = f"{self.where.prefix}/{ftype.folder}/" if self.where.prefix else f"{ftype.folder}/"
        pages = self.client.list_objects(folder, self.list_v1)
        while True:
            with self._slots:
                try:
                    page = next(pages, None)
                except (S3Error, NoCredentials, urllib3.exceptions.HTTPError, OSError) as exc:
                    raise self._error(exc, f"List({ftype.label})", ftype, "") from None
            if page is None:
                return
            for key, size in page:
                name = key[len(folder):].rpartition("/")[2]
                if name:
                    yield name, size

    def close(self) -> None:
        self.client.close()


def open_s3(location: str, options: Optional[BackendOptions] = None) -> S3Backend:
    options = options or BackendOptions()
    return S3Backend(parse_location(location), location, options.for_scheme("s3", OPTIONS), options)
