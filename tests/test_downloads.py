"""Downloads: 5xx retried, a checksum failure fetched again (never kept), mirror addresses, trusted --src files."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from svqbench.data import download
from svqbench.data.download import Source, fetch, join_url, trusting_src
from svqbench.errors import SvqbenchError

GOOD = b"the published bytes" * 100


class FlakyHandler(BaseHTTPRequestHandler):
    """/busy.bin: 503 for the first two requests, then GOOD. /flip.bin: wrong bytes once, then GOOD.
    /bad.bin: always wrong bytes. Anything else: 404."""

    counts: dict[str, int] = {}

    def do_GET(self):
        seen = FlakyHandler.counts[self.path] = FlakyHandler.counts.get(self.path, 0) + 1
        if self.path == "/busy.bin" and seen <= 2:
            self.send_error(503)
            return
        if self.path.startswith("/loop/"):  # a server redirecting to itself
            self.send_response(302)
            self.send_header("Location", self.path)
            self.end_headers()
            return
        if self.path in ("/cut.bin", "/whole.bin"):  # no Content-Length, closed early on the first request
            body = GOOD[:100] if self.path == "/cut.bin" and seen == 1 else GOOD
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if self.path in ("/busy.bin", "/flip.bin", "/bad.bin"):
            body = b"x" * len(GOOD) if self.path == "/bad.bin" or (self.path == "/flip.bin" and seen == 1) else GOOD
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT", 0.01)
    FlakyHandler.counts = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


SHA = hashlib.sha256(GOOD).hexdigest()


def test_server_errors_are_retried(server, tmp_path):
    path, record = fetch(Source("busy.bin", f"{server}/busy.bin", sha256=SHA), tmp_path / ".d.partial", None)
    assert path.read_bytes() == GOOD and FlakyHandler.counts["/busy.bin"] == 3


def test_a_download_failing_its_checksum_is_fetched_again_never_kept(server, tmp_path):
    path, _ = fetch(Source("flip.bin", f"{server}/flip.bin", sha256=SHA), tmp_path / ".d.partial", None)
    assert path.read_bytes() == GOOD and FlakyHandler.counts["/flip.bin"] == 2
    with pytest.raises(SvqbenchError, match="does not match the published"):
        fetch(Source("bad.bin", f"{server}/bad.bin", sha256=SHA), tmp_path / ".d.partial", None)
    assert FlakyHandler.counts["/bad.bin"] == 2 and not (tmp_path / "downloads" / "bad.bin").exists()


def test_errors_name_the_right_remedy_for_a_mirror(server, tmp_path):
    with pytest.raises(SvqbenchError, match="HTTP 404; pass --url with a mirror"):
        fetch(Source("gone.bin", f"{server}/gone.bin"), tmp_path / ".a.partial", None)
    with pytest.raises(SvqbenchError) as error:
        fetch(
            Source("gone.bin", "http://example.invalid/gone.bin"),
            tmp_path / ".b.partial",
            None,
            f"{server}/mirror/gone.bin",
        )
    assert "check the --url address" in str(error.value) and "pass --url" not in str(error.value)


def test_mirror_folders_join_with_or_without_a_trailing_slash():
    assert (
        join_url("http://m/kth", "walking.zip")
        == join_url("http://m/kth/", "walking.zip")
        == "http://m/kth/walking.zip"
    )


def test_a_src_file_with_another_checksum_needs_trust_src(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"local copy")
    local = hashlib.sha256(b"local copy").hexdigest()
    source = Source("a.bin", "http://x/a.bin", sha256=SHA)
    with pytest.raises(SvqbenchError) as error:
        fetch(source, tmp_path, tmp_path)
    assert local in str(error.value) and SHA in str(error.value) and "--trust-src" in str(error.value)
    with trusting_src(True) as trusted:
        path, record = fetch(source, tmp_path, tmp_path)
        assert record["trusted"] and record["sha256"] == local and record["published"] == SHA
        assert trusted == [f"a.bin (sha256 {local}; published {SHA})"]
    with pytest.raises(SvqbenchError):  # trust ends with the prep
        fetch(source, tmp_path, tmp_path)


def test_a_redirect_loop_is_one_line_naming_the_url(server, tmp_path):
    """Fault 11: a server redirecting to itself."""
    url = f"{server}/loop/taxibj.h5"
    with pytest.raises(SvqbenchError, match="redirects in a loop") as error:
        fetch(Source("taxibj.h5", "http://example.invalid/taxibj.h5"), tmp_path / ".a.partial", None, url)
    assert url in str(error.value)


def test_a_cut_download_without_checksum_is_fetched_again_under_force_or_another_url(server, tmp_path):
    """Fault 21: a transfer cut off with no Content-Length looks complete; --force or another --url fetch it anew
    instead of reusing it forever."""
    from svqbench.data.download import refetching

    source = Source("cut.bin", "http://example.invalid/cut.bin")  # no published checksum
    path, _ = fetch(source, tmp_path / ".a.partial", None, f"{server}/cut.bin")
    assert path.read_bytes() == GOOD[:100]  # nothing could tell it was cut
    again, _ = fetch(source, tmp_path / ".a.partial", None, f"{server}/cut.bin")
    assert FlakyHandler.counts["/cut.bin"] == 1  # the same address, no --force: the cache is reused
    with refetching(True):
        path, record = fetch(source, tmp_path / ".a.partial", None, f"{server}/cut.bin")
    assert path.read_bytes() == GOOD and record["sha256"] == SHA and FlakyHandler.counts["/cut.bin"] == 2
    path, record = fetch(source, tmp_path / ".a.partial", None, f"{server}/whole.bin")  # another mirror
    assert path.read_bytes() == GOOD and FlakyHandler.counts["/whole.bin"] == 1
