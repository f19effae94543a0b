"""The global HTTP flags of current restic: --http-user-agent reaches the server with every
request of the REST and S3 backends; --stuck-request-timeout ends a request that gets no answer
(it is retried, then the command fails) instead of waiting restic's default five minutes."""
import http.server
import threading
import time

import pytest

from conftest import clean_env, run_restique as restique


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request 404 (no repository here) and records its User-Agent; with
    `stall` set, answers nothing at all."""

    def _answer(self):
        self.server.agents.append(self.headers.get("User-Agent"))
        if self.server.stall:
            self.server.stalled.wait(30)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.agents, httpd.stall, httpd.stalled = [], False, threading.Event()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.stalled.set()
    httpd.shutdown()


def _locations(httpd):
    port = httpd.server_address[1]
    return {"rest": f"rest:http://127.0.0.1:{port}/repo/", "s3": f"s3:http://127.0.0.1:{port}/bucket/repo"}


S3_ENV = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}


@pytest.mark.parametrize("kind", ["rest", "s3"])
def test_the_user_agent_goes_with_every_request(server, kind):
    proc = restique(None, "-r", _locations(server)[kind], "--http-user-agent", "backup-job/2.1", "snapshots",
                    check=False, env=clean_env(**S3_ENV))
    assert proc.returncode != 0  # nothing there
    assert server.agents and set(server.agents) == {"backup-job/2.1"}, server.agents


def test_without_the_flag_the_default_agent_is_sent(server):
    restique(None, "-r", _locations(server)["rest"], "snapshots", check=False)
    assert server.agents and "backup-job/2.1" not in server.agents


@pytest.mark.parametrize("kind", ["rest", "s3"])
def test_a_stuck_request_is_given_up_after_the_timeout(server, kind):
    server.stall = True
    started = time.monotonic()
    proc = restique(None, "-r", _locations(server)[kind], "--stuck-request-timeout", "1s", "snapshots",
                    check=False, env=clean_env(RESTIQUE_BACKEND_RETRY_TIME="2s", **S3_ENV), timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    assert took < 20, f"the stuck request was waited for {took:.0f} s"
    assert len(server.agents) >= 2  # given up, then retried


@pytest.mark.parametrize("value", ["abc", "5", "-1s", ""])
def test_a_bad_timeout_is_refused(value):
    proc = restique(None, "-r", "/nonexistent", "--stuck-request-timeout", value, "snapshots", check=False)
    if value == "5":  # a bare number: seconds (restic wants a unit; both go on to open the repository)
        assert b"stuck-request-timeout" not in proc.stderr
        return
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (f'Fatal: invalid argument "{value}" for "--stuck-request-timeout" '
                                            f'flag: time: invalid duration "{value}"')
