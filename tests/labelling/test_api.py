"""labelling.api.Api's retry policy by HTTP status: 5xx and 429 are retried a bounded number of times, any other 4xx
is raised at once with the server's body, and ``retry=False`` (task import) tries once whatever the answer.

The HTTP side is a plain ``http.server`` on 127.0.0.1 that answers a scripted status per request and counts them: it
stands in for no Label Studio behaviour (the tests with the real server are in test_faults.py, which covers a refused
connection); it only lets each status code be produced on demand, which a real Label Studio does not allow.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from labelling.api import Api
from labelling.settings import LabelSettings, LabelStudioError, LabelStudioUnavailable


class _Scripted(BaseHTTPRequestHandler):
    script: ClassVar[list[int]] = []  # statuses of the next requests (then 200)
    seen: ClassVar[list[str]] = []  # every request, in order

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        status = self.script.pop(0) if self.script else 200
        body = json.dumps({"status": status, "detail": f"scripted {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def scripted():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Scripted.script, _Scripted.seen = [], []
    settings = LabelSettings(port=httpd.server_address[1], retries=3, retry_wait=0.01)
    yield Api(f"http://127.0.0.1:{httpd.server_address[1]}", "t0ken", settings), _Scripted
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_throttling_are_retried_then_succeed(scripted, status):
    api, srv = scripted
    srv.script = [status, status]
    assert api.get("/api/projects/") == {"status": 200, "detail": "scripted 200"}
    assert srv.seen == ["GET /api/projects/"] * 3


@pytest.mark.parametrize("status", [503, 429])
def test_persistent_server_errors_end_after_the_bounded_tries(scripted, status):
    api, srv = scripted
    srv.script = [status] * 10
    with pytest.raises(LabelStudioUnavailable, match=rf"kept failing on GET /api/x after 3 tries \(HTTP {status}"):
        api.get("/api/x")
    assert len(srv.seen) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_client_errors_are_raised_at_once_with_the_servers_body(scripted, status):
    api, srv = scripted
    srv.script = [status, 200]
    with pytest.raises(LabelStudioError, match=rf"POST /api/y -> {status}: .*scripted {status}") as e:
        api.post("/api/y", {"a": 1})
    assert not isinstance(e.value, LabelStudioUnavailable) and srv.seen == ["POST /api/y"]


def test_retry_false_tries_once(scripted):
    """Task import is not idempotent: one try, and the caller reconciles with the server."""
    api, srv = scripted
    srv.script = [503, 200]
    with pytest.raises(LabelStudioUnavailable, match="after 1 try "):
        api.post("/api/projects/1/import", [{"data": {}}], retry=False)
    assert srv.seen == ["POST /api/projects/1/import"]
