"""The kept-alive HTTP(S) connections the REST and S3 backends send their requests over.

A pool holds at most `size` connections to one server; a request waits for a free one rather
than opening more. urllib3 neither retries nor follows redirects (the retry wrapper retries,
and a redirect is an answer the backend reads), and a stuck request (no byte sent or received
for `stuck_timeout` seconds, restic's --stuck-request-timeout) fails, to be retried, rather
than hanging forever.
"""
import urllib3

from .options import STUCK_TIMEOUT

CONNECT_TIMEOUT = 30.0  # seconds


def connection_pool(host: str, port, size: int, secure: bool, *, verify: bool = True,
                    ca_certs=None, cert_file=None, stuck_timeout: float = STUCK_TIMEOUT) -> urllib3.HTTPConnectionPool:
    """Connections to host:port (port None: the scheme's). Over https the server's certificate
    is checked against ca_certs (a PEM file; None: the system's authorities), or not at all
    when verify is False (--insecure-tls); cert_file is a client certificate with its key."""
    settings = dict(maxsize=size, block=True, retries=False,
                    timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT, stuck_timeout), read=stuck_timeout))
    if not secure:
        return urllib3.HTTPConnectionPool(host, port, **settings)
    if verify:
        settings.update(cert_reqs="CERT_REQUIRED", ca_certs=ca_certs)
    else:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        settings.update(cert_reqs="CERT_NONE", assert_hostname=False)
    if cert_file:
        settings.update(cert_file=cert_file)
    return urllib3.HTTPSConnectionPool(host, port, **settings)
