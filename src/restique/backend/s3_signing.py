"""AWS Signature Version 4 for S3 requests: the Authorization header Amazon, MinIO, SeaweedFS
and every other S3 store check, made with hashlib and hmac (botocore's signer costs a few
milliseconds of Python a request and a few hundred of imports a command)."""
import hashlib
import hmac
import time
from typing import Dict, Optional, Tuple
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"  # over https, where TLS already protects the body
_ALGORITHM = "AWS4-HMAC-SHA256"


def quote_path(path: str) -> str:
    """A request path as S3 expects it in the URL and in the canonical request (`/` kept)."""
    return quote(path, safe="/~")


def canonical_query(query: Dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))


class Signer:
    """Signs requests with one access key for one region. The signing key is derived once a
    day (it depends on the date, the region and the secret only)."""

    def __init__(self, region: str):
        self.region = region
        self._keys: Dict[Tuple[str, str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day, self.region))
        if cached is None:
            key = ("AWS4" + secret).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day, self.region): key}  # keep only the current one
            cached = key
        return cached

    def sign(self, credentials: Tuple[str, str, Optional[str]], method: str, path: str, query: Dict[str, str],
             headers: Dict[str, str], payload_hash: str, now: Optional[float] = None) -> None:
        """Add x-amz-date, x-amz-content-sha256, the session token and Authorization to
        headers (which must hold Host). Every header sent is signed."""
        key_id, secret, token = credentials
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        headers["x-amz-date"] = stamp
        headers["x-amz-content-sha256"] = payload_hash
        if token:
            headers["x-amz-security-token"] = token
        signed = sorted((name.lower(), " ".join(str(value).split())) for name, value in headers.items())
        names = ";".join(name for name, _ in signed)
        request = "\n".join((method, quote_path(path), canonical_query(query),
                             "".join(f"{name}:{value}\n" for name, value in signed), names, payload_hash))
        scope = f"{stamp[:8]}/{self.region}/s3/aws4_request"
        to_sign = f"{_ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(secret, stamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"{_ALGORITHM} Credential={key_id}/{scope}, SignedHeaders={names}, "
                                    f"Signature={signature}")
