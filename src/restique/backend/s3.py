"""Amazon S3 and S3-compatible stores (MinIO, SeaweedFS, Ceph, ...) through boto3.

Locations as restic parses them: `s3:host/bucket/prefix` and `s3://host/bucket/prefix` (https),
`s3:http(s)://host[:port]/bucket/prefix`. Objects are laid out as in every restic backend:
`prefix/config`, `prefix/keys/ID`, `prefix/data/12/12ab...`.

Credentials come from boto3's chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, instance roles), the region from `-o s3.region` or
AWS_DEFAULT_REGION. The client is botocore's (boto3's own layer only adds start-up time; its
transfer manager is imported for the rare file large enough for a multipart upload). It is
imported only when an s3 location is opened: it costs a few hundred milliseconds that other
commands must not pay. boto3's own retries are off: the retry wrapper
composed around every remote backend retries, and knows which errors are permanent.
"""
import functools
import hashlib
import posixpath
import threading
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import AlreadyExists, UsageError
from .base import (BackendError, BackendShortRead, FileType, PermanentBackendError, check_range,
                   not_found)
from .options import BackendOptions, positive_int
from .parts import PartsReader, as_parts

# Above this size a file goes up in parts (S3's single PUT has a 5 GiB limit, and parts of a
# large pack upload side by side); packs are 16 MiB by default, so most files take one PUT.
MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # restic keeps metadata out of these classes
# (connect, read) seconds: a stuck request fails and is retried rather than hanging forever
TIMEOUTS = (30.0, 300.0)
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
    "connections": (positive_int, 5),
    "region": (str, ""),
    "bucket-lookup": (_lookup_style, "auto"),
    "storage-class": (str, ""),
    "list-objects-v1": (_bool_option, False),
    "unsafe-anonymous-auth": (_bool_option, False),
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


def _addressing(style: str, endpoint: str) -> str:
    """boto3's addressing style for restic's bucket lookup; `auto` uses bucket names in the host
    only for Amazon's own endpoints (as restic's client does), paths everywhere else."""
    if style == "dns" or (style == "auto" and endpoint.split(":")[0].endswith((".amazonaws.com", ".amazonaws.com.cn"))):
        return "virtual"
    return "path"


class S3Backend:
    """A repository under a prefix of one bucket."""

    atomic_replace = True  # a PUT replaces an object at once; readers see the old or the new one

    def __init__(self, where: S3Location, location: Optional[str] = None, settings: Optional[dict] = None):
        settings = {name: default for name, (_, default) in OPTIONS.items()} | (settings or {})
        self.where = where
        self.bucket = where.bucket
        self.location = location or f"s3:{where.endpoint}/{where.bucket}/{where.prefix}".rstrip("/")
        self.storage_class = settings["storage-class"]
        self.list_v1 = settings["list-objects-v1"]
        self.connections = settings["connections"]
        self._slots = threading.BoundedSemaphore(self.connections)
        self.client = _make_client(where, settings)

    # --- names and errors ---
    def _key(self, ftype: FileType, name: str) -> str:
        if ftype is FileType.CONFIG:
            parts = ("config",)
        elif ftype is FileType.PACK:
            parts = ("data", name[:2], name)
        else:
            parts = (ftype.folder, name)
        return "/".join((self.where.prefix,) + parts) if self.where.prefix else "/".join(parts)

    def _call(self, what: str, ftype: FileType, name: str, method, **kwargs):
        """One request, holding a connection slot; its failure as a backend error."""
        with self._slots:
            try:
                return method(Bucket=self.bucket, **kwargs)
            except Exception as exc:  # botocore's errors share no base class with OSError
                raise self._error(exc, what, ftype, name) from None

    def _error(self, exc: Exception, what: str, ftype: FileType, name: str) -> OSError:
        code, message = _code_and_message(exc)
        if code is None:  # no answer: connection refused, reset, timed out, or no credentials
            text = f"{what}: {message}"
            if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                return PermanentBackendError(f"{text} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
            return BackendError(text)
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
            self._call("HeadBucket", FileType.CONFIG, "", self.client.head_bucket)
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
        region = self.client.meta.region_name
        extra = {}
        if region and region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._call("CreateBucket", FileType.CONFIG, "", self.client.create_bucket, **extra)
        except BackendError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise

    def save(self, ftype: FileType, name: str, data) -> None:
        body = PartsReader(data)  # read part by part, rewound on a retry: no joined copy
        extra = {"ContentType": "application/octet-stream"}
        if self.storage_class and (ftype is FileType.PACK or self.storage_class not in ARCHIVE_CLASSES):
            extra["StorageClass"] = self.storage_class
        key = self._key(ftype, name)
        if len(body) < MULTIPART_THRESHOLD:
            # the store checks the MD5 and refuses a body damaged on the way (restic sends it too)
            import base64

            digest = hashlib.md5()
            for part in as_parts(data):
                digest.update(part)
            extra["ContentMD5"] = base64.b64encode(digest.digest()).decode()
            self._call("Save", ftype, name, self.client.put_object, Key=key, Body=body, **extra)
        else:
            from boto3.s3.inject import upload_fileobj

            self._call("Save", ftype, name, functools.partial(upload_fileobj, self.client), Key=key,
                       Fileobj=body, ExtraArgs=extra, Config=_transfer_config(self.connections))

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        if length == 0:  # an empty range is no range: still say whether the file is there
            if offset > self.stat(ftype, name):
                raise self._short(ftype, name, offset, length)
            return b""
        extra = {}
        if offset or length is not None:
            extra["Range"] = f"bytes={offset}-" + ("" if length is None else str(offset + length - 1))
        try:
            content = self._call("Load", ftype, name, self._get_body, Key=self._key(ftype, name), **extra)
        except PermanentBackendError as exc:
            if "InvalidRange" not in str(exc):
                raise
            if length is None and offset == self.stat(ftype, name):
                return b""  # the range starts just past the end: empty, not short
            raise self._short(ftype, name, offset, length) from None
        if length is not None and len(content) != length:
            raise self._short(ftype, name, offset, length, len(content))
        return content

    def _get_body(self, **request) -> bytes:
        return self.client.get_object(**request)["Body"].read()

    def _short(self, ftype, name, offset, length, got=None) -> BackendShortRead:
        detail = "offset is past the end" if got is None else f"got {got} bytes"
        return BackendShortRead(f"{ftype.label}/{name}: short read, wanted {length} bytes at {offset}, {detail}")

    def stat(self, ftype: FileType, name: str) -> int:
        answer = self._call("Stat", ftype, name, self.client.head_object, Key=self._key(ftype, name))
        return int(answer["ContentLength"])

    def remove(self, ftype: FileType, name: str) -> None:
        self.stat(ftype, name)  # S3 deletes a missing object without a word; the contract says not found
        self._call("Remove", ftype, name, self.client.delete_object, Key=self._key(ftype, name))

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        if ftype is FileType.CONFIG:
            return
        folder = f"{self.where.prefix}/{ftype.folder}/" if self.where.prefix else f"{ftype.folder}/"
        method = "list_objects" if self.list_v1 else "list_objects_v2"
        pages = iter(self.client.get_paginator(method).paginate(Bucket=self.bucket, Prefix=folder))
        while True:
            with self._slots:
                try:
                    page = next(pages, None)
                except Exception as exc:
                    raise self._error(exc, f"List({ftype.label})", ftype, "") from None
            if page is None:
                return
            for entry in page.get("Contents", ()):
                name = entry["Key"][len(folder):].rpartition("/")[2]
                if name:
                    yield name, int(entry["Size"])

    def close(self) -> None:
        self.client.close()


def _code_and_message(exc: Exception) -> Tuple[Optional[str], str]:
    """The S3 error code and message of a failed request; code None when no answer came."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        code = str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or (f"HTTP status {status}" if status else code)
        return code, " ".join(str(message).split())
    return None, " ".join(str(exc).split())


def _transfer_config(connections: int):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=PART_SIZE,
                          max_concurrency=connections, use_threads=connections > 1)


def _make_client(where: S3Location, settings: dict):
    import botocore
    import botocore.session
    from botocore.config import Config

    scheme = "http" if where.use_http else "https"
    session = botocore.session.get_session()
    session.register_component("data_loader", _s3_model_loader(session))
    region = settings["region"] or session.get_config_variable("region") or "us-east-1"
    config = Config(
        region_name=region,
        retries={"total_max_attempts": 1},
        connect_timeout=TIMEOUTS[0], read_timeout=TIMEOUTS[1],
        max_pool_connections=settings["connections"] * 2,
        s3={"addressing_style": _addressing(settings["bucket-lookup"], where.endpoint)},
        signature_version=botocore.UNSIGNED if settings["unsafe-anonymous-auth"] else None,
        # checksums only where S3 demands them: many S3-compatible stores refuse the newer
        # streaming checksums; single PUTs carry an MD5 instead
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.create_client("s3", endpoint_url=f"{scheme}://{where.endpoint}", config=config)


def _s3_model_loader(session):
    """botocore's model loader, made for a process that only ever makes an S3 client: it does
    not list the ~400 services it knows to check that S3 is one of them, and it decodes the
    model files with orjson (the stdlib's json took most of a client's 0.4 s of start-up).
    User model folders (AWS_DATA_PATH, ~/.aws/models) are still searched first."""
    import orjson
    from botocore.loaders import JSONFileLoader, Loader, create_loader

    class FastJSONFileLoader(JSONFileLoader):
        def _load_file(self, full_path, open_method):
            try:
                with open_method(full_path, "rb") as fp:
                    return orjson.loads(fp.read())
            except FileNotFoundError:
                return None

    class S3ModelLoader(Loader):
        def list_available_services(self, type_name):
            return ["s3"]

    paths = create_loader(session.get_config_variable("data_path")).search_paths
    return S3ModelLoader(extra_search_paths=list(paths), file_loader=FastJSONFileLoader(),
                         include_default_search_paths=False)


def open_s3(location: str, options: Optional[BackendOptions] = None) -> S3Backend:
    settings = (options or BackendOptions()).for_scheme("s3", OPTIONS)
    return S3Backend(parse_location(location), location, settings)
