"""MNIST IDX files: the canonical table, and a reader that verifies everything before returning data.

A file is accepted only if its header (magic number, dimensions), its size and the MD5 of its
uncompressed content all match the canonical MNIST file; gzip-compressed and raw files are both read
(recognised by content, not by name). Anything else is a DataError naming the file.
"""
import hashlib
import os
import zlib

import numpy as np

# name -> (IDX magic, dimensions, MD5 of the uncompressed content). The sums are the canonical ones
# (../shared/data/mnist/README.md); gzip wrappers differ between mirrors, the content does not.
MNIST_FILES = {
    "train-images-idx3-ubyte": (0x00000803, (60000, 28, 28), "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (0x00000801, (60000,), "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (0x00000803, (10000, 28, 28), "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (0x00000801, (10000,), "27ae3e4e09519cfbb04c329615203637"),
}

_GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """A data file is missing, unreadable, or not the file it claims to be (the message names it)."""


def expected_size(name):
    """Size in bytes of the uncompressed IDX file ``name``."""
    _, dims, _ = MNIST_FILES[name]
    return 4 + 4 * len(dims) + int(np.prod(dims))


def _gunzip(blob, path, name, limit):
    # Bounded decompression: a wrong or hostile file cannot make us allocate more than limit + 1 bytes.
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = d.decompress(blob, limit + 1)
    except zlib.error as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None
    if len(data) > limit:
        _check_header(data, name, path)  # a more useful message when it is another IDX file
        raise DataError(f"{path}: decompresses to more than the expected {limit} bytes")
    if not d.eof:
        raise DataError(f"{path}: gzip stream is truncated (decompressed {len(data)} of {limit} bytes)")
    if d.unused_data.strip(b"\0"):
        raise DataError(f"{path}: unexpected data after the gzip stream")
    return data


def _check_header(data, name, path):
    magic, dims, _ = MNIST_FILES[name]
    head = 4 + 4 * len(dims)
    if len(data) < head:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    got_magic = int.from_bytes(data[0:4], "big")
    if got_magic != magic:
        raise DataError(f"{path}: bad IDX magic number 0x{got_magic:08x}, expected 0x{magic:08x} for {name}")
    got_dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(len(dims)))
    if got_dims != dims:
        raise DataError(f"{path}: IDX dimensions {got_dims}, expected {dims} for {name}")
    return head


def parse_idx(data, name, path):
    """Check header, size and MD5 of uncompressed IDX bytes against MNIST_FILES[name]; return the array."""
    _, dims, md5 = MNIST_FILES[name]
    head = _check_header(data, name, path)
    if len(data) != expected_size(name):
        raise DataError(f"{path}: {len(data)} bytes of IDX data, expected {expected_size(name)} "
                        f"({'truncated' if len(data) < expected_size(name) else 'trailing bytes'})")
    got_md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if got_md5 != md5:
        raise DataError(f"{path}: MD5 of the uncompressed content is {got_md5}, expected {md5} for {name} "
                        f"(the file is corrupt or is not the canonical MNIST file)")
    # A writable copy: callers may modify their arrays; the bytes object is immutable.
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims).copy()


def read_idx(path, name):
    """Read and verify the MNIST file ``name`` (a key of MNIST_FILES) stored at ``path``, gzip or raw."""
    path = os.fspath(path)
    if name not in MNIST_FILES:
        raise ValueError(f"read_idx: name must be one of {sorted(MNIST_FILES)}, got {name!r}")
    limit = expected_size(name)
    try:
        with open(path, "rb") as f:
            # Raw files are exactly `limit` bytes; gzip ones are smaller. Reading one byte more
            # detects an oversized raw file without reading an arbitrarily large one.
            blob = f.read(limit + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    data = _gunzip(blob, path, name, limit) if blob[:2] == _GZIP_MAGIC else blob
    return parse_idx(data, name, path)
