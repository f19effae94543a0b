"""The S3 client's own parts, without a store: request signing against Amazon's published
example, where keys and the region are found, a region correction from the store's answer,
errors read from answers, and a file cut into upload parts without copies."""
import http.server
import threading

import pytest

from restique.backend.parts import PartsBody, as_parts
from restique.backend.s3_client import S3Client, S3Error, _split, regional_endpoint
from restique.backend.s3_credentials import Credentials, NoCredentials, configured_region
from restique.backend.s3_signing import Signer

AWS_EXAMPLE_KEYS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None)
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_CONFIG_FILE")


def test_signature_is_amazons_example():
    """The GET Object example of Amazon's Signature Version 4 documentation, to the digit."""
    headers = {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9"}
    payload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    Signer("us-east-1").sign(AWS_EXAMPLE_KEYS, "GET", "/test.txt", {}, headers, payload, now=1369353600)
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_session_token_is_sent_and_signed():
    headers = {"Host": "h"}
    Signer("eu-west-1").sign(("id", "secret", "token-1"), "HEAD", "/b/k", {"x": "1 2"}, headers, "UNSIGNED-PAYLOAD")
    assert headers["x-amz-security-token"] == "token-1"
    assert "x-amz-security-token" in headers["Authorization"] and "/eu-west-1/s3/" in headers["Authorization"]


@pytest.fixture
def aws_home(tmp_path, monkeypatch):
    """No AWS settings of the developer's: files in tmp_path, variables unset."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_keys_from_the_environment_come_first(aws_home, monkeypatch):
    (aws_home / "credentials").write_text("[default]\naws_access_key_id = file\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    assert Credentials().current() == ("env-id", "env-secret", "env-token")


def test_keys_from_the_profile_in_either_file(aws_home, monkeypatch):
    (aws_home / "credentials").write_text("[default]\naws_access_key_id = d\naws_secret_access_key = ds\n"
                                          "[work]\naws_access_key_id = w\naws_secret_access_key = ws\n")
    (aws_home / "config").write_text("[profile home]\naws_access_key_id = h\naws_secret_access_key = hs\n"
                                     "aws_session_token = ht\nregion = ap-south-1\n")
    assert Credentials().current() == ("d", "ds", None)
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert Credentials().current() == ("w", "ws", None)
    monkeypatch.setenv("AWS_PROFILE", "home")
    assert Credentials().current() == ("h", "hs", "ht")
    assert configured_region() == "ap-south-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert configured_region() == "eu-north-1"


def test_no_keys_anywhere(aws_home, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "missing")
    with pytest.raises(NoCredentials):
        Credentials().current()
    assert configured_region() is None


class _RegionStub(http.server.BaseHTTPRequestHandler):
    """Refuses a request signed for any region but eu-west-2, naming that region as Amazon does."""

    seen = []

    def do_GET(self):
        authorization = self.headers["Authorization"]
        self.seen.append(authorization)
        if "/eu-west-2/s3/" in authorization:
            body = b"right region"
            self.send_response(200)
        else:
            body = (b"<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1' is wrong;"
                    b" expecting 'eu-west-2'</Message></Error>")
            self.send_response(400)
            self.send_header("x-amz-bucket-region", "eu-west-2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RegionStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RegionStub.seen = []
    yield server
    server.shutdown()
    server.server_close()


def _client(server, region="us-east-1") -> S3Client:
    return S3Client(f"127.0.0.1:{server.server_address[1]}", "bucket", use_http=True, region=region,
                    virtual_hosted=False, connections=2, credentials=Credentials.fixed(("id", "secret", None)))


def test_a_request_for_the_wrong_region_is_signed_again_for_the_right_one(stub):
    client = _client(stub)
    assert client.request("GET", "some/key").data == b"right region"
    assert client.region == "eu-west-2" and len(_RegionStub.seen) == 2
    assert client.request("GET", "other/key").data == b"right region" and len(_RegionStub.seen) == 3  # kept
    client.close()


def test_errors_carry_the_stores_code_and_message(stub, monkeypatch):
    monkeypatch.setattr(_RegionStub, "do_GET", _always_missing)
    with pytest.raises(S3Error) as caught:
        _client(stub).request("GET", "k")
    assert (caught.value.status, caught.value.code, caught.value.message) == (404, "NoSuchKey", "gone")
    monkeypatch.setattr(_RegionStub, "do_GET", _refused_without_body)
    with pytest.raises(S3Error) as caught:
        _client(stub).request("GET", "k")
    assert (caught.value.status, caught.value.code, caught.value.message) == (403, "403", "Forbidden")


def _always_missing(handler):
    body = b'<?xml version="1.0"?><Error xmlns="x"><Code>NoSuchKey</Code><Message>gone</Message></Error>'
    handler.send_response(404)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _refused_without_body(handler):
    handler.send_response(403)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.mark.parametrize("sizes, size", [([10, 3, 0, 7], 4), ([5], 5), ([], 4), ([1, 1, 1], 10), ([9, 9], 3)])
def test_a_file_is_cut_into_upload_parts_of_the_size_asked(sizes, size):
    parts = [bytes([n]) * length for n, length in enumerate(sizes)]
    whole = b"".join(parts)
    pieces = _split(as_parts(parts), size)
    assert b"".join(b"".join(PartsBody(piece)) for piece in pieces) == whole
    assert [len(PartsBody(piece)) for piece in pieces[:-1]] == [size] * (len(pieces) - 1)
    assert 0 < len(PartsBody(pieces[-1])) <= size or whole == b""


@pytest.mark.parametrize("virtual", [True, False])
def test_a_bucket_found_in_another_region_is_asked_at_that_regions_endpoint(virtual):
    client = S3Client("s3.amazonaws.com", "bucket", use_http=False, region="us-east-1", virtual_hosted=virtual,
                      connections=1, credentials=None)
    client._move_to("eu-west-2")
    assert client.region == "eu-west-2" and client.pool.host == client.host
    assert client.host == ("bucket.s3.eu-west-2.amazonaws.com" if virtual else "s3.eu-west-2.amazonaws.com")
    other = S3Client("minio.example:9000", "bucket", use_http=True, region="us-east-1", virtual_hosted=False,
                     connections=1, credentials=None)
    other._move_to("eu-west-2")  # not Amazon: the same endpoint, signed for the region it names
    assert other.region == "eu-west-2" and other.host == "minio.example:9000"
    assert regional_endpoint("cn-north-1", "s3.amazonaws.com:443") == "s3.cn-north-1.amazonaws.com.cn:443"


def test_a_truncated_listing_without_a_next_page_is_an_error(stub, monkeypatch):
    def truncated(handler):
        body = (b"<ListBucketResult><IsTruncated>true</IsTruncated>"
                b"<Contents><Key>p/a</Key><Size>1</Size></Contents></ListBucketResult>")
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    monkeypatch.setattr(_RegionStub, "do_GET", truncated)
    pages = _client(stub).list_objects("p/")
    assert next(pages) == [("p/a", 1)]
    with pytest.raises(S3Error, match="InvalidListing"):
        next(pages)


def test_anonymous_requests_go_unsigned(stub, monkeypatch):
    def answer_headers(handler):
        body = repr(sorted(name.lower() for name in handler.headers)).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    monkeypatch.setattr(_RegionStub, "do_GET", answer_headers)
    client = S3Client(f"127.0.0.1:{stub.server_address[1]}", "bucket", use_http=True, region="us-east-1",
                      virtual_hosted=False, connections=1, credentials=None)
    sent = client.request("GET", "k").data.decode()
    assert "authorization" not in sent and "x-amz-date" not in sent and "host" in sent
    signed = _client(stub).request("GET", "k").data.decode()
    assert "authorization" in signed and "x-amz-content-sha256" in signed
