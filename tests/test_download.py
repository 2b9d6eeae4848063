"""MNIST download against a local HTTP server on 127.0.0.1 (no other network).

The server serves, per path, a scripted sequence of responses: good files, corrupt content, truncated
bodies, 404s, 500s and stalls, and logs every request so tests can check mirror order and retries.
"""
import gzip
import http.server
import threading
import time

import numpy as np
import pytest

from edgecnn import _mnist_download as dl
from edgecnn._idx import MNIST_FILES, read_idx
from edgecnn.data import DataError, load_mnist

NAME = "t10k-labels-idx1-ubyte"
FILE = NAME + ".gz"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        with server.lock:
            server.log.append(self.path)
            script = server.routes.get(self.path, [("status", 404)])
            action = script.pop(0) if len(script) > 1 else script[0]
        kind = action[0]
        if kind == "status":
            self.send_error(action[1])
            return
        if kind == "hang":
            time.sleep(action[1])
            return
        body = action[1]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if kind == "nolength":  # no Content-Length: the body ends when the connection closes
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "ok":
            self.wfile.write(body)
        elif kind == "short":  # announce the full length, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.log, srv.routes = [], {}
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def good(mnist_dir):
    return (mnist_dir / FILE).read_bytes()


@pytest.fixture(scope="module")
def corrupt(good):
    raw = bytearray(gzip.decompress(good))
    raw[500] ^= 0x01  # valid gzip, valid header and size, wrong content
    return gzip.compress(bytes(raw))


def _mirrors(server, *names):
    return [f"{server.base}/{n}/" for n in names]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_downloads_verifies_and_writes_atomically(server, good, tmp_path):
    server.routes["/a/" + FILE] = [("ok", good)]
    path = dl.download(NAME, tmp_path / "cache", mirrors=_mirrors(server, "a", "b"), backoff=0)
    assert path == tmp_path / "cache" / FILE and path.read_bytes() == good
    assert server.log == ["/a/" + FILE]
    assert _leftovers(tmp_path / "cache") == [FILE]
    assert read_idx(path, NAME).shape == (10000,)


def test_falls_back_to_next_mirror_on_404_without_retrying_it(server, good, tmp_path):
    server.routes["/b/" + FILE] = [("ok", good)]  # /a/ has nothing: 404
    path = dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a", "b", "c"), retries=3, backoff=0)
    assert path.read_bytes() == good
    assert server.log == ["/a/" + FILE, "/b/" + FILE]


def test_corrupt_content_moves_to_next_mirror(server, good, corrupt, tmp_path):
    server.routes["/a/" + FILE] = [("ok", corrupt)]
    server.routes["/b/" + FILE] = [("ok", good)]
    lines = []
    path = dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a", "b"), retries=3, backoff=0,
                       log=lines.append)
    assert path.read_bytes() == good
    assert server.log == ["/a/" + FILE, "/b/" + FILE]  # a checksum mismatch is not retried
    fails = [line for line in lines if "attempt" in line]
    assert len(fails) == 1 and "MD5" in fails[0] and "/a/" in fails[0]
    assert lines[0] == f"downloading {server.base}/a/{FILE}" and lines[-1].startswith("saved ")
    assert _leftovers(tmp_path) == [FILE]


def test_truncated_transfer_is_retried_then_falls_back(server, good, tmp_path):
    server.routes["/a/" + FILE] = [("short", good)]
    server.routes["/b/" + FILE] = [("ok", good)]
    lines = []
    path = dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a", "b"), retries=2, backoff=0,
                       log=lines.append)
    assert path.read_bytes() == good
    assert server.log == ["/a/" + FILE, "/a/" + FILE, "/b/" + FILE]
    fails = [line for line in lines if "attempt" in line]
    assert len(fails) == 2 and all("/a/" in line and "short read" in line for line in fails)
    assert _leftovers(tmp_path) == [FILE]


def test_transient_server_error_is_retried_with_backoff(server, good, tmp_path, monkeypatch):
    sleeps = []
    monkeypatch.setattr(dl.time, "sleep", sleeps.append)
    server.routes["/a/" + FILE] = [("status", 503), ("status", 500), ("ok", good)]
    path = dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a", "b"), retries=3, backoff=0.5)
    assert path.read_bytes() == good
    assert server.log == ["/a/" + FILE] * 3
    assert sleeps == [0.5, 1.0]


def test_timeout_is_reported_and_next_mirror_used(server, good, tmp_path):
    server.routes["/a/" + FILE] = [("hang", 3.0)]
    server.routes["/b/" + FILE] = [("ok", good)]
    lines = []
    t = time.perf_counter()
    path = dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a", "b"), retries=1, timeout=0.3,
                       backoff=0, log=lines.append)
    assert time.perf_counter() - t < 2.5
    assert path.read_bytes() == good
    assert "timed out" in [line for line in lines if "attempt" in line][0]


def test_all_mirrors_failing_is_one_clear_error_and_leaves_nothing(server, corrupt, tmp_path):
    server.routes["/a/" + FILE] = [("short", corrupt)]
    server.routes["/b/" + FILE] = [("ok", corrupt)]
    # /c/ is missing (404)
    with pytest.raises(dl.DownloadError) as e:
        dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a", "b", "c"), retries=2, backoff=0)
    msg = str(e.value)
    assert isinstance(e.value, DataError) and isinstance(e.value, ValueError)
    for m in ("a", "b", "c"):
        assert f"{server.base}/{m}/{FILE}" in msg
    assert "short read" in msg and "MD5" in msg and "404" in msg
    assert "--data-dir" in msg and "EDGECNN_DATA_DIR" in msg
    assert _leftovers(tmp_path) == []


def test_unreachable_mirror_says_what_happened(tmp_path):
    # A port nobody listens on (bound then closed) on loopback: connection refused, no real network.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(dl.DownloadError, match="refused") as e:
        dl.download(NAME, tmp_path, mirrors=[f"http://127.0.0.1:{port}/m/"], retries=2, backoff=0)
    assert "attempt 2" in str(e.value)
    assert _leftovers(tmp_path) == []


def test_interrupt_during_download_leaves_no_partial_file(server, good, tmp_path, monkeypatch):
    server.routes["/a/" + FILE] = [("ok", good)]

    def interrupted(path, name):
        assert path.endswith(".part") and (tmp_path / path).exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "read_idx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a"), backoff=0)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["ok", "nolength"])
def test_oversized_response_is_refused(server, tmp_path, monkeypatch, kind):
    monkeypatch.setattr(dl, "MAX_BYTES", 1000)
    monkeypatch.setattr(dl, "_CHUNK", 256)
    server.routes["/a/" + FILE] = [(kind, b"\x1f\x8b" + bytes(5000))]
    with pytest.raises(dl.DownloadError, match="more than the 1000 bytes allowed"):
        dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a"), backoff=0)
    assert _leftovers(tmp_path) == []


def test_response_without_content_length_works(server, good, tmp_path):
    server.routes["/a/" + FILE] = [("nolength", good)]
    assert dl.download(NAME, tmp_path, mirrors=_mirrors(server, "a"), backoff=0).read_bytes() == good


def test_load_mnist_downloads_only_missing_files(server, mnist_dir, tmp_path, capsys):
    for name in MNIST_FILES:
        if name != NAME:
            (tmp_path / (name + ".gz")).write_bytes((mnist_dir / (name + ".gz")).read_bytes())
    server.routes["/b/" + FILE] = [("ok", (mnist_dir / FILE).read_bytes())]
    mnist = load_mnist(tmp_path, mirrors=_mirrors(server, "a", "b"), backoff=0)
    err = capsys.readouterr().err
    assert f"edgecnn: downloading {server.base}/b/{FILE}" in err and "verified" in err
    assert server.log == ["/a/" + FILE, "/b/" + FILE]
    np.testing.assert_array_equal(mnist.test_labels[:5], [7, 2, 1, 0, 4])
    assert (tmp_path / FILE).exists()
    # Second load: everything is local, no request.
    load_mnist(tmp_path, mirrors=_mirrors(server, "a", "b"))
    assert len(server.log) == 2


def test_load_mnist_download_failure_names_urls_and_fix(server, tmp_path):
    with pytest.raises(dl.DownloadError) as e:
        load_mnist(tmp_path / "new", mirrors=_mirrors(server, "x"), retries=1, backoff=0)
    assert f"{server.base}/x/train-images-idx3-ubyte.gz" in str(e.value)
    assert "EDGECNN_DATA_DIR" in str(e.value)


@pytest.mark.parametrize("kwargs, param", [
    (dict(mirrors=["http://example.com/mnist/"]), "mirrors"),
    (dict(mirrors=["ftp://127.0.0.1/"]), "mirrors"),
    (dict(mirrors=[]), "mirrors"),
    (dict(retries=0), "retries"),
    (dict(timeout=0), "timeout"),
    (dict(timeout="30"), "timeout"),
    (dict(backoff=-1), "backoff"),
    (dict(name="mnist.npz"), "name"),
])
def test_bad_arguments_name_the_parameter(tmp_path, kwargs, param):
    args = dict(name=NAME, dest_dir=tmp_path)
    args.update(kwargs)
    with pytest.raises(ValueError, match=param):
        dl.download(**args)


def test_default_mirrors_are_https():
    assert len(dl.MIRRORS) >= 2
    assert all(m.startswith("https://") and m.endswith("/") for m in dl.MIRRORS)
