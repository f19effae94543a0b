"""The connection pool the REST and S3 backends share (backend.http_pool): kept-alive
connections that a request waits for, no retries or redirects of urllib3's own, timeouts, and
the certificate checks each backend asks for."""
import urllib3

from restique.backend.http_pool import CONNECT_TIMEOUT, STUCK_TIMEOUT, connection_pool
from restique.backend.options import BackendOptions
from restique.backend.rest import RestBackend
from restique.backend.s3_client import S3Client


def _common(pool, size, stuck=STUCK_TIMEOUT):
    assert pool.pool.maxsize == size and pool.block
    assert pool.retries is False
    assert (pool.timeout.connect_timeout, pool.timeout.read_timeout) == (min(CONNECT_TIMEOUT, stuck), stuck)


def test_plain_http_pool():
    pool = connection_pool("example.org", 8000, 3, False)
    assert type(pool) is urllib3.HTTPConnectionPool
    assert (pool.host, pool.port) == ("example.org", 8000)
    _common(pool, 3)


def test_https_checks_the_certificate_against_the_given_authorities():
    pool = connection_pool("example.org", None, 2, True, ca_certs="/some/ca.pem", cert_file="/some/client.pem")
    assert isinstance(pool, urllib3.HTTPSConnectionPool)
    assert (pool.cert_reqs, pool.ca_certs, pool.cert_file) == ("CERT_REQUIRED", "/some/ca.pem", "/some/client.pem")
    _common(pool, 2)


def test_https_without_verification():
    pool = connection_pool("example.org", 443, 1, True, verify=False)
    assert pool.cert_reqs == "CERT_NONE" and pool.assert_hostname is False


def test_rest_backend_pool_holds_its_connections():
    be = RestBackend("https://user:pw@example.org:8443/repo/", connections=4,
                     options=BackendOptions(cacert=("/a.pem",), tls_client_cert="/c.pem"))
    _common(be.pool, 4)
    assert (be.pool.host, be.pool.port, be.pool.cert_reqs, be.pool.ca_certs, be.pool.cert_file) == \
        ("example.org", 8443, "CERT_REQUIRED", "/a.pem", "/c.pem")
    insecure = RestBackend("https://example.org/repo/", options=BackendOptions(insecure_tls=True))
    assert insecure.pool.cert_reqs == "CERT_NONE"
    assert type(RestBackend("http://example.org/repo/").pool) is urllib3.HTTPConnectionPool


def test_s3_client_pool_has_room_for_upload_parts(monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", "/aws/ca.pem")
    client = S3Client("s3.example.org:9000", "bucket", use_http=False, region="us-east-1",
                      virtual_hosted=False, connections=3, credentials=None)
    _common(client.pool, 6)
    assert (client.pool.host, client.pool.port, client.pool.ca_certs) == ("s3.example.org", 9000, "/aws/ca.pem")
    plain = S3Client("localhost:9000", "bucket", use_http=True, region="us-east-1",
                     virtual_hosted=True, connections=1, credentials=None)
    assert type(plain.pool) is urllib3.HTTPConnectionPool and plain.pool.host == "bucket.localhost"


def test_a_stuck_request_timeout_reaches_both_backends():
    rest = RestBackend("http://example.org/repo/", options=BackendOptions(stuck_request_timeout=7.0))
    _common(rest.pool, 5, stuck=7.0)
    client = S3Client("localhost:9000", "bucket", use_http=True, region="us-east-1", virtual_hosted=False,
                      connections=2, credentials=None, stuck_timeout=90.0)
    _common(client.pool, 4, stuck=90.0)
