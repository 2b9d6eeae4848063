"""The on-disk container shared by model files and checkpoints: a zip of JSON plus raw .npy entries.

Layout (all entries ZIP_STORED, written in this order):
    ``edgecnn``          magic line, e.g. ``b"edgecnn-model 1\\n"`` (kind and format version)
    ``document.json``    a JSON tree; arrays appear in it as ``{"__array__": "arrays/3.npy", "dtype": ..., "shape": ...}``
    ``arrays/<i>.npy``   one .npy per array, C order, parsed here by hand (never np.load, never pickle)

Reading never trusts the file: declared sizes are capped before anything is read, every .npy header is
parsed and checked against the document before its data is copied, object dtypes are refused, and every
failure becomes one ``ContainerError`` whose message names the file. Writing goes to a temporary file in
the same directory, is fsynced, then renamed into place (and the directory fsynced), so a crash never
leaves a half-written file under the real name.
"""
import ast
import io
import json
import os
import tempfile
import zipfile

import numpy as np
from ._fsutil import fsync_dir

MAGIC_ENTRY = "edgecnn"
DOC_ENTRY = "document.json"
MAX_FILE_BYTES = 2 << 30      # no model or checkpoint of this library comes near 2 GiB
MAX_DOC_BYTES = 64 << 20
MAX_ENTRIES = 100_000
MAX_ARRAY_BYTES = 1 << 30
ALLOWED_DTYPES = {np.dtype(t) for t in ("float32", "float64", "int8", "int16", "int32", "int64",
                                         "uint8", "uint16", "uint32", "uint64", "bool")}


class ContainerError(ValueError):
    """Any problem reading or writing an edgecnn file; the message names the file."""


# ---------------------------------------------------------------------------------------------- encoding
def _encode(tree, arrays):
    """JSON-able copy of ``tree``; arrays are moved to ``arrays`` and replaced by references.

    Tuples, bytes and NumPy scalars are tagged so that RNG states round-trip exactly.
    """
    if isinstance(tree, np.ndarray):
        if tree.dtype.hasobject or np.dtype(tree.dtype) not in ALLOWED_DTYPES:
            raise TypeError(f"cannot store an array of dtype {tree.dtype}")
        name = f"arrays/{len(arrays)}.npy"
        arrays.append((name, np.ascontiguousarray(tree)))
        return {"__array__": name, "dtype": tree.dtype.str, "shape": list(tree.shape)}
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if not isinstance(k, str):
                raise TypeError(f"dictionary keys must be strings, got {k!r}")
            out[k] = _encode(v, arrays)
        if any(k.startswith("__") for k in out):
            return {"__dict__": out}
        return out
    if isinstance(tree, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in tree]}
    if isinstance(tree, list):
        return [_encode(v, arrays) for v in tree]
    if isinstance(tree, bytes):
        return {"__bytes__": tree.hex()}
    if isinstance(tree, np.generic):
        if tree.dtype not in ALLOWED_DTYPES:
            raise TypeError(f"cannot store a scalar of dtype {tree.dtype}")
        return {"__scalar__": tree.dtype.str, "value": tree.item()}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store a value of type {type(tree).__name__}")


def _decode(tree, arrays, where="document"):
    if isinstance(tree, list):
        return [_decode(v, arrays, where) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__array__" in tree:
        return arrays[tree["__array__"]]
    if "__tuple__" in tree:
        return tuple(_decode(v, arrays, where) for v in _expect(tree["__tuple__"], list, where))
    if "__bytes__" in tree:
        return bytes.fromhex(_expect(tree["__bytes__"], str, where))
    if "__scalar__" in tree:
        dtype = _dtype(tree["__scalar__"], where)
        return dtype.type(tree["value"])
    if "__dict__" in tree:
        tree = _expect(tree["__dict__"], dict, where)
    return {k: _decode(v, arrays, where) for k, v in tree.items()}


def _expect(value, kind, where):
    if not isinstance(value, kind):
        raise ContainerError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _dtype(text, where):
    try:
        dtype = np.dtype(_expect(text, str, where))
    except TypeError as e:
        raise ContainerError(f"{where}: bad dtype {text!r}") from e
    if dtype.hasobject or dtype not in ALLOWED_DTYPES:
        raise ContainerError(f"{where}: dtype {dtype} is not allowed")
    return dtype


def _array_refs(tree, out):
    """Collect every array reference of a decoded-JSON tree."""
    if isinstance(tree, list):
        for v in tree:
            _array_refs(v, out)
    elif isinstance(tree, dict):
        if "__array__" in tree:
            out.append(tree)
        elif isinstance(tree.get("__dict__"), dict):
            for v in tree["__dict__"].values():
                _array_refs(v, out)
        else:
            for v in tree.values():
                _array_refs(v, out)
    return out


# ---------------------------------------------------------------------------------------------- writing
def write(path, kind, version, tree):
    """Atomically write ``tree`` (dicts, lists, tuples, scalars, NumPy arrays) as a ``kind`` container."""
    path = os.fspath(path)
    arrays = []
    doc = json.dumps(_encode(tree, arrays), allow_nan=True).encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr(MAGIC_ENTRY, f"{kind} {int(version)}\n".encode("ascii"))
                zf.writestr(DOC_ENTRY, doc)
                for name, arr in arrays:
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, arr, allow_pickle=False)
                    zf.writestr(name, buf.getvalue())
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask()) if hasattr(os, "fchmod") else None
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)
    return path


def _umask():
    """The process umask (mkstemp creates 0600 files; the final file gets the usual 0666 & ~umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------- reading
def read(path, kind, max_version):
    """Read a ``kind`` container; returns (version, tree) or raises ContainerError naming ``path``."""
    path = os.fspath(path)
    try:
        return _read(path, kind, max_version)
    except ContainerError as e:
        raise ContainerError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise ContainerError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ContainerError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise ContainerError(f"{path}: permission denied") from None
    except MemoryError:
        raise ContainerError(f"{path}: declares more data than fits in memory") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError, TypeError,
            OverflowError, UnicodeDecodeError, NotImplementedError, RuntimeError) as e:
        raise ContainerError(f"{path}: not a valid {kind} file ({type(e).__name__}: {e})") from None


def _read(path, kind, max_version):
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ContainerError(f"file is {size} bytes, larger than the {MAX_FILE_BYTES} allowed")
    with open(path, "rb") as f:
        head = f.read(4)
        if head != b"PK\x03\x04":
            raise ContainerError(f"not an edgecnn file (wrong magic bytes {head!r}, expected a {kind} file)")
        f.seek(0)
        with zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise ContainerError(f"{len(infos)} entries, more than the {MAX_ENTRIES} allowed")
            by_name = {}
            for info in infos:
                if info.filename in by_name:
                    raise ContainerError(f"duplicate entry {info.filename!r}")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise ContainerError(f"entry {info.filename!r} uses an unsupported compression")
                if info.flag_bits & 0x1:
                    raise ContainerError(f"entry {info.filename!r} is encrypted")
                by_name[info.filename] = info
            magic = _entry(zf, by_name, MAGIC_ENTRY, 64)
            try:
                got_kind, got_version = magic.decode("ascii").split()
                version = int(got_version)
            except (UnicodeDecodeError, ValueError):
                raise ContainerError(f"bad magic entry {magic[:40]!r}") from None
            if got_kind != kind:
                raise ContainerError(f"is a {got_kind} file, expected a {kind} file")
            if not 1 <= version <= max_version:
                raise ContainerError(f"{kind} format version {version} is not supported "
                                     f"(this edgecnn reads versions 1..{max_version}; upgrade edgecnn)")
            doc_bytes = _entry(zf, by_name, DOC_ENTRY, MAX_DOC_BYTES)
            try:
                doc = json.loads(doc_bytes.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                raise ContainerError(f"{DOC_ENTRY} is not valid JSON ({e})") from None
            try:
                refs = _array_refs(doc, [])
            except RecursionError:
                raise ContainerError(f"{DOC_ENTRY} is nested too deeply") from None
            arrays, total = {}, 0
            for ref in refs:
                name = ref.get("__array__")
                where = f"array entry {name!r}"
                if not isinstance(name, str) or name in arrays:
                    raise ContainerError(f"bad or repeated array reference {name!r}")
                dtype = _dtype(ref.get("dtype"), where)
                shape = _shape(ref.get("shape"), where)
                nbytes = _nbytes(shape, dtype.itemsize, where)
                total += nbytes
                if total > MAX_ARRAY_BYTES:
                    raise ContainerError(f"arrays declare more than {MAX_ARRAY_BYTES} bytes in total")
                raw = _entry(zf, by_name, name, nbytes + 65536 + 128)
                arrays[name] = _parse_npy(raw, dtype, shape, where)
            try:
                return version, _decode(doc, arrays)
            except RecursionError:
                raise ContainerError(f"{DOC_ENTRY} is nested too deeply") from None


def _entry(zf, by_name, name, limit):
    info = by_name.get(name)
    if info is None:
        raise ContainerError(f"missing entry {name!r} (truncated or not written by edgecnn)")
    if info.file_size > limit:
        raise ContainerError(f"entry {name!r} declares {info.file_size} bytes, more than the {limit} allowed")
    with zf.open(info) as f:
        data = f.read(limit + 1)  # zipfile stops at the declared size and checks the CRC
    if len(data) != info.file_size:
        raise ContainerError(f"entry {name!r} is truncated")
    return data


def _shape(shape, where):
    if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape):
        raise ContainerError(f"{where}: bad shape {shape!r}")
    return tuple(shape)


def _nbytes(shape, itemsize, where):
    n = itemsize
    for d in shape:
        n *= d
        if n > MAX_ARRAY_BYTES:
            raise ContainerError(f"{where}: shape {shape} is larger than {MAX_ARRAY_BYTES} bytes")
    return n


def _parse_npy(raw, dtype, shape, where):
    """Parse a .npy byte string by hand: header checked against the document before any data copy."""
    buf = io.BytesIO(raw)
    try:
        major, minor = np.lib.format.read_magic(buf)
    except ValueError as e:
        raise ContainerError(f"{where}: not a .npy entry ({e})") from None
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise ContainerError(f"{where}: unsupported .npy version {major}.{minor}")
    hlen_bytes = 2 if major == 1 else 4
    hlen = int.from_bytes(buf.read(hlen_bytes), "little")
    if hlen > 65536:
        raise ContainerError(f"{where}: .npy header too long")
    header = buf.read(hlen)
    try:
        meta = ast.literal_eval(header.decode("latin1" if major < 3 else "utf-8"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        raise ContainerError(f"{where}: unreadable .npy header") from None
    if not isinstance(meta, dict) or set(meta) != {"descr", "fortran_order", "shape"}:
        raise ContainerError(f"{where}: bad .npy header {header[:80]!r}")
    if not isinstance(meta["descr"], str) or _dtype(meta["descr"], where) != dtype:
        raise ContainerError(f"{where}: dtype {meta['descr']!r} does not match the declared {dtype.str}")
    if meta["fortran_order"] is not False:
        raise ContainerError(f"{where}: Fortran-order arrays are not accepted")
    if not isinstance(meta["shape"], tuple) or tuple(meta["shape"]) != shape:
        raise ContainerError(f"{where}: shape {meta['shape']!r} does not match the declared {list(shape)}")
    data = raw[buf.tell():]
    expected = _nbytes(shape, dtype.itemsize, where)
    if len(data) != expected:
        raise ContainerError(f"{where}: holds {len(data)} bytes of data, expected {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
