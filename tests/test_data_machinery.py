import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from svqbench import data
from svqbench.data import download
from svqbench.data.archives import extract
from svqbench.data.download import Source, fetch
from svqbench.errors import SvqbenchError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file.bin, honouring ``Range: bytes=N-``; records the ranges asked for."""

    ranges: list[str] = []

    def do_GET(self):
        if self.path != "/file.bin":
            self.send_error(404)
            return
        start = 0
        if "Range" in self.headers:
            RangeHandler.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def test_download_resumes_a_partial_file_and_verifies_it(server, tmp_path):
    target = tmp_path / ".ds.partial"
    cache = download.download_dir(target)
    cache.mkdir(parents=True)
    (cache / "file.bin.part").write_bytes(PAYLOAD[:1000])
    source = Source("file.bin", f"{server}/file.bin", sha256=sha256(PAYLOAD))
    path, record = fetch(source, target, None)
    assert path.read_bytes() == PAYLOAD and record["sha256"] == sha256(PAYLOAD)
    assert "bytes=1000-" in RangeHandler.ranges
    assert not (cache / "file.bin.part").exists()


def test_downloaded_file_with_wrong_checksum_is_removed(server, tmp_path):
    source = Source("file.bin", f"{server}/file.bin", sha256="0" * 64)
    with pytest.raises(SvqbenchError, match="file.bin: sha256 .* does not match"):
        fetch(source, tmp_path / ".ds.partial", None)
    assert not (tmp_path / "downloads" / "file.bin").exists()


def test_http_error_and_url_override(server, tmp_path):
    with pytest.raises(SvqbenchError, match="HTTP 404"):
        fetch(Source("missing.bin", f"{server}/missing.bin"), tmp_path / ".a.partial", None)
    local = tmp_path / "mirror.bin"
    local.write_bytes(b"mirrored")
    path, record = fetch(Source("x.bin", f"{server}/none"), tmp_path / ".b.partial", None, local.as_uri())
    assert path.read_bytes() == b"mirrored" and record["origin"] == local.as_uri()


def test_src_file_checked_against_published_checksum(tmp_path):
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "a.bin").write_bytes(b"abc")
    path, _ = fetch(Source("a.bin", "http://x/a.bin", md5=hashlib.md5(b"abc").hexdigest()), tmp_path, tmp_path)
    assert path == tmp_path / "nested" / "a.bin"
    with pytest.raises(SvqbenchError, match=r"a\.bin: md5 .* does not match"):
        fetch(Source("a.bin", "http://x/a.bin", md5="f" * 32), tmp_path, tmp_path)
    with pytest.raises(SvqbenchError, match=r"b\.bin not found in --src"):
        fetch(Source("b.bin", "http://x/b.bin"), tmp_path, tmp_path)


def zip_with(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(name, "payload")
    return path


def tar_with(path: Path, member: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        tf.addfile(member, io.BytesIO(b"payload"[: member.size]))
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt"])
def test_zip_member_escaping_the_folder_is_refused(tmp_path, name):
    archive = zip_with(tmp_path / "evil.zip", name)
    with pytest.raises(SvqbenchError, match="evil.zip: member .* outside"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "ok.txt").exists()


def test_tar_links_and_traversal_are_refused(tmp_path):
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(SvqbenchError, match="link or device"):
        extract(tar_with(tmp_path / "link.tar.gz", link), tmp_path / "out")
    up = tarfile.TarInfo("../up.txt")
    up.size = 7
    with pytest.raises(SvqbenchError, match="outside"):
        extract(tar_with(tmp_path / "up.tar.gz", up), tmp_path / "out2")
    assert not (tmp_path / "up.txt").exists()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_truncated_archive_is_a_one_line_error(tmp_path, kind):
    member = tarfile.TarInfo("big.bin")
    member.size = 7
    whole = zip_with(tmp_path / "a.zip", "b.txt") if kind == "zip" else tar_with(tmp_path / "a.tar.gz", member)
    blob = whole.read_bytes()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SvqbenchError, match=r"cut\.(zip|tar\.gz)") as err:
        extract(cut, tmp_path / "out")
    assert "\n" not in str(err.value)


def test_extracts_only_wanted_members(tmp_path):
    archive = zip_with(tmp_path / "a.zip", "dir/video.avi")
    out = extract(archive, tmp_path / "out", lambda name: name.endswith(".avi"))
    assert out == [tmp_path / "out" / "dir" / "video.avi"]


def test_boolean_options_are_parsed_not_truth_tested(tmp_path):
    with pytest.raises(SvqbenchError, match="holdout='maybe'.*true or false"):
        data.prepare("kth", root=tmp_path, src=tmp_path, holdout="maybe")


def test_folder_without_complete_manifest_is_refused(tmp_path):
    (tmp_path / "kth").mkdir()
    (tmp_path / "kth" / "manifest.json").write_text('{"complete": false}')
    with pytest.raises(SvqbenchError, match="incomplete"):
        data.create("kth", "train", tmp_path)
