"""The few S3 requests a repository needs, signed (s3_signing) and sent over a urllib3 pool of
kept-alive connections: objects' GET/PUT/HEAD/DELETE, listings (ListObjectsV2 or the first
version), bucket checks, and multipart uploads for files too large for one PUT.

Answers are whole bodies: an error's XML gives its code and message (S3Error); a request that
gets no answer raises urllib3's or the socket's error. There are no retries here: the retry
wrapper composed around every remote backend retries, and knows which errors are permanent.
A wrong region is the one thing fixed on the spot: Amazon names the bucket's region in its
refusal (x-amz-bucket-region), and the request is signed again for it, as the AWS tools do.
"""
import hashlib
import os
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Optional, Tuple

import urllib3

from .http_pool import STUCK_TIMEOUT, connection_pool
from .parts import FileBody, PartsBody, as_parts
from .s3_credentials import Credentials
from .s3_signing import EMPTY_SHA256, UNSIGNED_PAYLOAD, Signer, canonical_query, quote_path

_REGION_REFUSALS = (301, 307, 400)
GLOBAL_ENDPOINTS = ("s3.amazonaws.com", "s3-external-1.amazonaws.com")


def regional_endpoint(region: str, endpoint: str) -> str:
    """Amazon's endpoint for region, with the port endpoint named, if any."""
    _, colon, port = endpoint.partition(":")
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"s3.{region}{suffix}{colon}{port}"


class S3Error(Exception):
    """An answer that is not a success: its HTTP status, S3 error code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class S3Client:
    """Requests to one bucket at one endpoint (`host[:port]`). virtual_hosted puts the bucket
    in the host name (Amazon's way), else in the path. credentials None: requests go unsigned."""

    def __init__(self, endpoint: str, bucket: str, *, use_http: bool, region: str, virtual_hosted: bool,
                 connections: int, credentials: Optional[Credentials], user_agent: str = "",
                 stuck_timeout: float = STUCK_TIMEOUT):
        self.bucket = bucket
        self.endpoint = endpoint
        self.secure = not use_http
        self.virtual_hosted = virtual_hosted
        self.connections = connections
        self._base = "/" if virtual_hosted else f"/{bucket}/"
        self.credentials = credentials
        self.user_agent = user_agent
        self.stuck_timeout = stuck_timeout
        self.signer = Signer(region)
        self._connect(endpoint)

    def _connect(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.host = f"{self.bucket}.{endpoint}" if self.virtual_hosted else endpoint
        self.pool = _pool(self.host, self.secure, self.connections, self.stuck_timeout)

    @property
    def region(self) -> str:
        return self.signer.region

    # --- one request ---
    def request(self, method: str, key: str = "", query: Optional[Dict[str, str]] = None,
                headers: Optional[Dict[str, str]] = None, body=None):
        """One request for key ("" is the bucket); the answer (body read) when its status is
        below 300, else S3Error. body: bytes or a PartsBody."""
        query = query or {}
        signed = self.credentials is not None
        digest = _payload_hash(body, self.secure) if signed and body is not None else EMPTY_SHA256
        path = self._base + key if key else self._base.rstrip("/") or "/"  # the bucket: `/bucket`, as S3 names it
        url = quote_path(path) + ("?" + canonical_query(query) if query else "")
        for attempt in range(2):
            sent = {"Host": self.host, **(headers or {})}
            if self.user_agent:
                sent["User-Agent"] = self.user_agent
            if body is not None:
                sent["Content-Length"] = str(len(body))
            if signed:
                self.signer.sign(self.credentials.current(), method, path, query, sent, digest)
            answer = self.pool.urlopen(method, url, body=body, headers=sent, redirect=False, retries=False,
                                       assert_same_host=False)
            if answer.status < 300:
                return answer
            region = answer.headers.get("x-amz-bucket-region")
            if attempt or answer.status not in _REGION_REFUSALS or not region or region == self.region:
                raise _error(answer)
            self._move_to(region)
        raise AssertionError("unreachable")

    def _move_to(self, region: str) -> None:
        """The bucket lives in another region: sign for it, and leave Amazon's global endpoint
        (which only redirects) for the region's own."""
        self.signer = Signer(region)
        if self.endpoint.split(":")[0] in GLOBAL_ENDPOINTS:
            old = self.pool
            self._connect(regional_endpoint(region, self.endpoint))
            old.close()

    # --- listings and multipart uploads ---
    def list_objects(self, prefix: str, version1: bool = False) -> Iterator[List[Tuple[str, int]]]:
        """Pages of (key, size) under prefix."""
        query = {"prefix": prefix} if version1 else {"list-type": "2", "prefix": prefix}
        while True:
            page = _document(self.request("GET", query=query))
            entries = [(item.findtext("{*}Key"), int(item.findtext("{*}Size"))) for item in page.iterfind("{*}Contents")]
            yield entries
            if page.findtext("{*}IsTruncated", "false").lower() != "true":
                return
            if version1:  # NextMarker only comes with a delimiter: else the last key is the marker
                following = page.findtext("{*}NextMarker") or (entries[-1][0] if entries else None)
            else:
                following = page.findtext("{*}NextContinuationToken")
            if not following:  # a listing cut short must not pass for a whole one
                raise S3Error(200, "InvalidListing", "a truncated listing names no next page")
            query["marker" if version1 else "continuation-token"] = following

    def upload_in_parts(self, key: str, data, part_size: int, headers: Dict[str, str], threads: int) -> None:
        """A multipart upload of data (bytes or a list of parts), parts sent side by side; an
        upload that fails is aborted, so that its parts do not stay stored."""
        upload = _document(self.request("POST", key, {"uploads": ""}, headers)).findtext("{*}UploadId")
        if not upload:
            raise S3Error(200, "InvalidResponse", "the store started a multipart upload without naming it")
        pieces = data.pieces(part_size) if isinstance(data, FileBody) else _split(as_parts(data), part_size)

        def send(number: int) -> str:
            answer = self.request("PUT", key, {"partNumber": str(number), "uploadId": upload},
                                  body=PartsBody(pieces[number - 1]))
            tag = answer.headers.get("ETag")
            if not tag:
                raise S3Error(answer.status, "MissingETag", f"part {number} was stored without an ETag")
            return tag

        try:
            with ThreadPoolExecutor(max(1, threads)) as pool:
                tags = list(pool.map(send, range(1, len(pieces) + 1)))
            parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{tag}</ETag></Part>"
                            for n, tag in enumerate(tags, 1))
            document = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
            done = _document(self.request("POST", key, {"uploadId": upload}, body=document))
            if done.tag.rpartition("}")[2] == "Error":  # S3 may answer 200 and fail while joining the parts
                raise S3Error(500, done.findtext("{*}Code") or "InternalError", done.findtext("{*}Message") or "")
        except BaseException:
            try:
                self.request("DELETE", key, {"uploadId": upload})
            except Exception:
                pass  # the upload's failure is what matters
            raise

    def close(self) -> None:
        self.pool.close()


def _pool(host: str, secure: bool, connections: int, stuck_timeout: float) -> urllib3.HTTPConnectionPool:
    """One connection a request slot, and as many again for the parts of a multipart upload.
    The certificate authorities are the system's, or AWS_CA_BUNDLE's as for the AWS tools."""
    name, _, port = host.rpartition(":") if host.rsplit(":", 1)[-1].isdigit() else (host, "", "")
    return connection_pool(name, int(port) if port else None, 2 * connections, secure,
                           ca_certs=os.environ.get("AWS_CA_BUNDLE") or None, stuck_timeout=stuck_timeout)


def _payload_hash(body, secure: bool) -> str:
    """Over https the body goes unsigned (TLS protects it); over plain http it is hashed."""
    if secure:
        return UNSIGNED_PAYLOAD
    digest = hashlib.sha256()
    for part in (body.parts if isinstance(body, PartsBody) else (body,)):
        digest.update(part)
    return digest.hexdigest()


def _split(parts: List[memoryview], size: int) -> List[List[memoryview]]:
    """The file made of parts, cut into pieces of size bytes (the last may be shorter), each
    a list of views into the parts: no copy."""
    pieces, current, room = [], [], size
    for part in parts:
        while len(part):
            taken, part = part[:room], part[room:]
            current.append(taken)
            room -= len(taken)
            if room == 0:
                pieces.append(current)
                current, room = [], size
    if current or not pieces:
        pieces.append(current)
    return pieces


def _document(answer) -> ET.Element:
    """A successful answer's XML; an S3Error when it is none."""
    try:
        return ET.fromstring(answer.data)
    except ET.ParseError:
        raise S3Error(answer.status, "InvalidResponse", "the store's answer is not XML") from None


def _error(answer) -> S3Error:
    """The S3 error an answer carries: the code and message of its XML, else its status (a
    HEAD's answer has no body)."""
    code = message = ""
    if answer.data:
        try:
            document = ET.fromstring(answer.data)
            code = document.findtext("{*}Code") or ""
            message = document.findtext("{*}Message") or ""
        except ET.ParseError:
            pass
    return S3Error(answer.status, code or str(answer.status), message or answer.reason or f"HTTP status {answer.status}")
