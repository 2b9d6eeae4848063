"""Verified MNIST download: public mirrors in order, retries, timeouts, atomic writes.

Each file is streamed into a temporary file in the destination folder, verified (IDX header, size,
canonical MD5 of the uncompressed content), fsynced and only then renamed into place, so the folder
never holds a half-written or unverified file. Transient failures (timeouts, connection errors,
5xx, short reads) are retried on the same mirror; a 4xx or wrong content moves on to the next mirror.
Standard library only (urllib).
"""
import http.client
import os
import pathlib
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from ._idx import MNIST_FILES, DataError, read_idx
from ._version import __version__
from ._fsutil import fsync_dir

# Tried in this order. Both serve the original gzip files (their uncompressed content is canonical).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

MAX_BYTES = 64 << 20  # no MNIST file (gzip or raw) is larger; a server sending more is wrong
_CHUNK = 1 << 20
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class DownloadError(DataError):
    """Every mirror failed for a file; the message lists each URL and what happened."""


class _Transient(Exception):
    """A failure worth retrying on the same mirror."""


def _check_mirror(url):
    parts = urllib.parse.urlsplit(url)
    # HTTPS only; plain HTTP is allowed for loopback addresses (local test servers, local caches).
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return
    raise ValueError(f"download: mirrors must be https:// URLs (http:// only on 127.0.0.1/localhost), "
                     f"got {url!r}")


def _fetch(url, fd, timeout, max_bytes):
    """Stream ``url`` into the open file ``fd``; raise _Transient or DataError-worthy errors."""
    request = urllib.request.Request(url, headers={"User-Agent": f"edgecnn/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if length is not None and length > max_bytes:
                raise DataError(f"server announces {length} bytes, more than the {max_bytes} bytes allowed")
            received = 0
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise DataError(f"server sent more than the {max_bytes} bytes allowed")
                os.write(fd, chunk)
            if length is not None and received != length:
                raise _Transient(f"short read: {received} of {length} bytes")
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DataError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Transient(f"{e.reason}") from None
    except (http.client.HTTPException, socket.timeout, TimeoutError, ConnectionError) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from None


def download(name, dest_dir, mirrors=MIRRORS, retries=3, timeout=30.0, backoff=1.0, log=None):
    """Download MNIST file ``name`` (a key of MNIST_FILES) into ``dest_dir`` as ``name.gz``; return its path.

    mirrors: base URLs tried in order (``mirror + name + ".gz"``); retries: attempts per mirror for
    transient failures, waiting backoff * 2**k seconds between them; timeout: seconds per socket
    operation; log: optional callable receiving one line per attempt.
    Raises DownloadError listing every URL tried and what happened.
    """
    if name not in MNIST_FILES:
        raise ValueError(f"download: name must be one of {sorted(MNIST_FILES)}, got {name!r}")
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    if not mirrors:
        raise ValueError("download: mirrors must list at least one URL")
    for m in mirrors:
        _check_mirror(m)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise ValueError(f"download: retries must be an int >= 1, got {retries!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"download: timeout must be a number of seconds > 0, got {timeout!r}")
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not backoff >= 0:
        raise ValueError(f"download: backoff must be a number of seconds >= 0, got {backoff!r}")
    dest_dir = pathlib.Path(dest_dir)
    target = dest_dir / (name + ".gz")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the data folder {dest_dir} ({e.strerror or e}). "
                            + _advice()) from None
    tried = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        for attempt in range(1, retries + 1):
            if log:
                log(f"downloading {url}")
            outcome = _attempt(url, name, dest_dir, target, timeout)
            if outcome is None:
                if log:
                    log(f"saved {target} (verified)")
                return target
            retry, message = outcome
            tried.append(f"{url} (attempt {attempt}): {message}")
            if log:
                log(f"{url} (attempt {attempt}): {message}")
            if not retry:
                break
            if attempt < retries:
                time.sleep(backoff * 2 ** (attempt - 1))
    raise DownloadError(f"could not download {name}.gz into {dest_dir}; tried:\n  " + "\n  ".join(tried)
                        + "\n" + _advice())


def _advice():
    return ("Offline or behind a firewall? Put the four MNIST IDX files (train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or raw) in a "
            "folder and pass --data-dir DIR (or set EDGECNN_DATA_DIR=DIR); they are read and verified "
            "from there, nothing is downloaded.")


def _attempt(url, name, dest_dir, target, timeout):
    """One download attempt. None on success, else (retry_same_mirror, message)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
    except OSError as e:
        return False, f"cannot write in {dest_dir} ({e.strerror or e})"
    try:
        try:
            _fetch(url, fd, timeout, MAX_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        read_idx(tmp, name)  # header, size and canonical MD5, or DataError
        os.replace(tmp, target)
        tmp = None
        fsync_dir(dest_dir)
        return None
    except _Transient as e:
        return True, str(e)
    except DataError as e:
        # read_idx names the temporary file; report the URL's content instead.
        return False, str(e).replace(tmp, "content") if tmp else str(e)
    except OSError as e:
        return False, f"{type(e).__name__}: {e}"
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
