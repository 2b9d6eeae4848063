"""MNIST for training: verified loading, normalization, a seeded validation split and batching.

* ``load_mnist(data_dir=None, download=True) -> MnistData`` reads the four IDX files (gzip or raw),
  verifying header, size and canonical MD5; missing files are downloaded (``edgecnn._mnist_download``).
* ``Normalization`` maps raw pixels (uint8 or float32 in 0..255) to float32 (N, 1, H, W).
* ``train_val_split`` and ``Batches`` (seeded, allocation-free per step, resumable mid-epoch).
* ``Augment`` (random shifts, rotations, scaling) lives in ``edgecnn.augment``, which imports Numba;
  it is re-exported here lazily so ``load_mnist`` alone never imports Numba.
"""
import concurrent.futures
import dataclasses
import math
import numbers
import os
import pathlib
import sys

import numpy as np

from ._idx import MNIST_FILES, DataError, read_idx

__all__ = ["DataError", "MnistData", "load_mnist", "default_data_dir", "find_mnist_files",
           "Normalization", "MNIST_MEAN", "MNIST_STD", "train_val_split", "Batches",
           "Augment"]  # noqa: F822 (lazy: module __getattr__ below, so importing data skips augment)

# MNIST training-set statistics on the [0, 1] scale (pixel / 255), as computed by
# Normalization.fit(train_images) in float64 (tests/test_data.py recomputes them from the real files).
MNIST_MEAN = 0.1306604762738429
MNIST_STD = 0.30810780385646264


def __getattr__(name):
    if name == "Augment":
        from .augment import Augment
        return Augment
    raise AttributeError(f"module 'edgecnn.data' has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------- loading

@dataclasses.dataclass(frozen=True)
class MnistData:
    """The four MNIST arrays: uint8 images (N, 28, 28) and uint8 labels (N,)."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    data_dir: pathlib.Path = None

    def __repr__(self):
        return (f"MnistData(train={self.train_images.shape[0]}, test={self.test_images.shape[0]}, "
                f"data_dir={str(self.data_dir)!r})")


def default_data_dir():
    """EDGECNN_DATA_DIR, else the user's cache dir ($XDG_CACHE_HOME or ~/.cache, then edgecnn/mnist)."""
    env = os.environ.get("EDGECNN_DATA_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return pathlib.Path(os.environ["LOCALAPPDATA"]) / "edgecnn" / "mnist"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(cache) / "edgecnn" / "mnist"


def _candidates(data_dir, name):
    # gzip as served by the mirrors, raw as unpacked by gunzip, and the dotted name some copies use.
    dotted = name.replace("-idx", ".idx")
    return [data_dir / (name + ".gz"), data_dir / name, data_dir / (dotted + ".gz"), data_dir / dotted]


def find_mnist_files(data_dir):
    """{name: existing path or None} for the four MNIST files in ``data_dir``."""
    data_dir = pathlib.Path(data_dir)
    return {name: next((p for p in _candidates(data_dir, name) if p.is_file()), None) for name in MNIST_FILES}


def load_mnist(data_dir=None, download=True, mirrors=None, **download_options):
    """Load MNIST, verifying every file; download missing files into ``data_dir`` when ``download``.

    data_dir: a folder with the IDX files (gzip or raw); default ``default_data_dir()``.
    mirrors / download_options: passed to ``edgecnn._mnist_download.download`` (custom mirrors,
    retries, timeout, backoff, log; progress lines go to stderr unless ``log`` is given).
    Raises DataError (a ValueError) naming the file for anything missing, corrupt or not MNIST.
    """
    data_dir = default_data_dir() if data_dir is None else pathlib.Path(os.fspath(data_dir)).expanduser()
    found = find_mnist_files(data_dir)
    missing = [name for name, path in found.items() if path is None]
    if missing and not download:
        raise DataError(
            f"load_mnist: MNIST files missing in {data_dir}: {', '.join(n + '.gz' for n in missing)}. "
            f"Point --data-dir (or EDGECNN_DATA_DIR) at a folder holding the four IDX files (gzip or "
            f"raw), or allow the download.")
    if missing:
        from . import _mnist_download
        kwargs = dict(download_options)
        kwargs.setdefault("log", lambda msg: print(f"edgecnn: {msg}", file=sys.stderr, flush=True))
        if mirrors is not None:
            kwargs["mirrors"] = mirrors
        for name in missing:
            found[name] = _mnist_download.download(name, data_dir, **kwargs)
    # zlib and hashlib release the GIL on large buffers: the two image files decompress in parallel.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        arrays = dict(zip(found, pool.map(read_idx, found.values(), found)))
    return MnistData(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"],
                     arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"], data_dir)


# ---------------------------------------------------------------------------------------- normalization

def _as_float(op, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be a finite number, got {value!r}")
    return float(value)


def _check_images(op, name, images, dtypes=(np.uint8, np.float32)):
    """(N, H, W) or (N, 1, H, W) array of an allowed dtype -> (N, H, W) view."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{op}: {name} must be a NumPy array, got {type(images).__name__}")
    if images.dtype not in [np.dtype(d) for d in dtypes]:
        raise TypeError(f"{op}: {name} must be {' or '.join(np.dtype(d).name for d in dtypes)}, "
                        f"got {images.dtype.name} with shape {images.shape}")
    if images.ndim == 4 and images.shape[1] == 1:
        images = images.reshape(images.shape[0], images.shape[2], images.shape[3])
    if images.ndim != 3:
        raise ValueError(f"{op}: {name} must have shape (N, H, W) or (N, 1, H, W), got {images.shape}")
    if 0 in images.shape:
        raise ValueError(f"{op}: {name} must not be empty, got shape {images.shape}")
    return images


class Normalization:
    """Pixel normalization, with statistics on the [0, 1] scale (pixel / 255).

    kind="zscore": y = (x / 255 - mean) / std; defaults are the MNIST training-set statistics.
    kind="minmax": y = (x / 255 - low) / (high - low); defaults low=0, high=1 (so y = x / 255).
    ``apply`` accepts uint8 or float32 images in 0..255 and returns float32 (N, 1, H, W).
    """
    KINDS = ("zscore", "minmax")

    def __init__(self, kind="zscore", mean=None, std=None, low=None, high=None):
        op = "Normalization"
        if kind not in self.KINDS:
            raise ValueError(f"{op}: kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "zscore":
            if low is not None or high is not None:
                raise ValueError(f"{op}: low/high apply to kind='minmax', not 'zscore'")
            self.mean = _as_float(op, "mean", MNIST_MEAN if mean is None else mean)
            self.std = _as_float(op, "std", MNIST_STD if std is None else std)
            if self.std <= 0:
                raise ValueError(f"{op}: std must be > 0, got {self.std}")
            center, spread = self.mean, self.std
        else:
            if mean is not None or std is not None:
                raise ValueError(f"{op}: mean/std apply to kind='zscore', not 'minmax'")
            self.low = _as_float(op, "low", 0.0 if low is None else low)
            self.high = _as_float(op, "high", 1.0 if high is None else high)
            if not self.high > self.low:
                raise ValueError(f"{op}: high must be > low, got low={self.low}, high={self.high}")
            center, spread = self.low, self.high - self.low
        # y = x * scale + offset in float32 (the same arithmetic for uint8 and float32 inputs).
        self._scale = np.float32(1.0 / (255.0 * spread))
        self._offset = np.float32(-center / spread)

    @classmethod
    def fit(cls, images, kind="zscore"):
        """Statistics of ``images`` (uint8 or float32 in 0..255), computed in float64."""
        images = _check_images("Normalization.fit", "images", images)
        if kind == "zscore":
            x = images.astype(np.float64) / 255.0
            return cls("zscore", mean=float(x.mean()), std=float(x.std()))
        if kind == "minmax":
            return cls("minmax", low=float(images.min()) / 255.0, high=float(images.max()) / 255.0)
        raise ValueError(f"Normalization.fit: kind must be one of {cls.KINDS}, got {kind!r}")

    def apply(self, images, out=None):
        """float32 (N, 1, H, W) normalized copy of ``images``; ``out`` may be a preallocated buffer
        (or ``images`` itself when it is float32 (N, 1, H, W): in-place)."""
        src = _check_images("Normalization.apply", "images", images)
        n, h, w = src.shape
        if out is None:
            out = np.empty((n, 1, h, w), np.float32)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (n, 1, h, w)
                  and out.flags.c_contiguous):
            got = f"{out.dtype.name} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise ValueError(f"Normalization.apply: out must be a C-contiguous float32 array of shape "
                             f"{(n, 1, h, w)}, got {got}")
        flat = out.reshape(n, h, w)
        np.multiply(src, self._scale, out=flat)
        np.add(flat, self._offset, out=flat)
        return out

    def to_config(self):
        if self.kind == "zscore":
            return {"kind": "zscore", "mean": self.mean, "std": self.std}
        return {"kind": "minmax", "low": self.low, "high": self.high}

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict) or "kind" not in config:
            raise ValueError(f"Normalization.from_config: config must be a dict with 'kind', got {config!r}")
        allowed = {"zscore": {"kind", "mean", "std"}, "minmax": {"kind", "low", "high"}}.get(config["kind"])
        if allowed is None:
            raise ValueError(f"Normalization.from_config: kind must be one of {cls.KINDS}, "
                             f"got {config['kind']!r}")
        extra = set(config) - allowed
        if extra:
            raise ValueError(f"Normalization.from_config: unknown keys {sorted(extra)} for kind "
                             f"{config['kind']!r}")
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, Normalization) and self.to_config() == other.to_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
        return f"Normalization({args})"


# ----------------------------------------------------------------------------------- split and batches

def _as_seed(op, seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{op}: seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_labels(op, images, labels):
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        got = (f"{labels.dtype.name} {labels.shape}" if isinstance(labels, np.ndarray)
               else type(labels).__name__)
        raise ValueError(f"{op}: labels must be a 1-D integer array, got {got}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{op}: labels has {labels.shape[0]} entries but images has {images.shape[0]} "
                         f"(images shape {images.shape})")


def train_val_split(images, labels, val_fraction=0.1, seed=0):
    """Seeded random split -> (train_images, train_labels, val_images, val_labels) (copies).

    The same seed and inputs give the same split; ``val_fraction`` in [0, 1).
    """
    op = "train_val_split"
    if not isinstance(images, np.ndarray) or images.ndim < 1:
        raise TypeError(f"{op}: images must be a NumPy array, got {type(images).__name__}")
    _check_labels(op, images, labels)
    frac = _as_float(op, "val_fraction", val_fraction)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"{op}: val_fraction must be in [0, 1), got {val_fraction!r}")
    rng = np.random.Generator(np.random.PCG64([_as_seed(op, seed), 0x5B117]))
    order = rng.permutation(images.shape[0])
    n_val = int(round(frac * images.shape[0]))
    # Sorted indices keep each part in the original order (better locality; the split is still random).
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return images[train], labels[train], images[val], labels[val]


_TAG_PERM, _TAG_AUG = 0x9E3779B9, 0x7F4A7C15  # distinct stream tags for SeedSequence keys


class Batches:
    """Mini-batches of (x float32 (B, 1, H, W), y int32 (B,)) over uint8 images, epoch after epoch.

    * Seeded: epoch e's order is a permutation drawn from (seed, e); batch b's augmentation parameters
      come from (seed, e, b). So (epoch, position) is the whole RNG state, and ``set_state`` resumes
      bit-identically anywhere, without replaying earlier batches.
    * Reused buffers: every step writes into the same preallocated arrays and allocates no arrays;
      the yielded x and y are overwritten by the next step (copy them to keep them).
    * ``iter(batches)`` runs the rest of the current epoch; the next ``iter`` starts the next epoch.
    * ``get_state()`` after a step refers to the batch after the one just yielded.
    """

    def __init__(self, images, labels, batch_size, shuffle=True, seed=0, augment=None,
                 normalization=None, drop_last=False):
        op = "Batches"
        images = _check_images(op, "images", images, dtypes=(np.uint8,))
        _check_labels(op, images, labels)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"{op}: batch_size must be an int >= 1, got {batch_size!r}")
        if normalization is None:
            normalization = Normalization()
        if not isinstance(normalization, Normalization):
            raise TypeError(f"{op}: normalization must be a Normalization, "
                            f"got {type(normalization).__name__}")
        if augment is not None and not callable(getattr(augment, "apply", None)):
            raise TypeError(f"{op}: augment must be an Augment (with .apply), got {type(augment).__name__}")
        n, h, w = images.shape
        self.images, self.labels = images, labels.astype(np.int32)  # one conversion, up front
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.seed = _as_seed(op, seed)
        self.augment, self.normalization = augment, normalization
        self.n = n
        if drop_last and n < self.batch_size:
            raise ValueError(f"{op}: drop_last with batch_size {batch_size} > {n} images gives no batches")
        self.epoch, self.position = 0, 0
        b = self.batch_size
        self._order = np.arange(n, dtype=np.intp)
        self._perm = self._order.copy()
        self._perm_epoch = -1
        self._u8 = np.empty((b, h, w), np.uint8)
        self._x = np.empty((b, 1, h, w), np.float32)
        self._y = np.empty((b,), np.int32)
        tail = n % b
        # Views for the short last batch, made once.
        self._tail = (self._u8[:tail], self._x[:tail], self._y[:tail]) if tail and not drop_last else None

    def __len__(self):
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def _epoch_order(self):
        if self._perm_epoch != self.epoch:
            np.copyto(self._perm, self._order)
            if self.shuffle:
                np.random.Generator(np.random.PCG64([self.seed, self.epoch, _TAG_PERM])).shuffle(self._perm)
            self._perm_epoch = self.epoch
        return self._perm

    def batch_rng(self, epoch, index):
        """The generator for batch ``index`` of ``epoch`` (augmentation parameters)."""
        return np.random.Generator(np.random.PCG64([self.seed, epoch, index, _TAG_AUG]))

    def _fill(self, index):
        b = self.batch_size
        start = index * b
        count = min(b, self.n - start)
        u8, x, y = (self._u8, self._x, self._y) if count == b else self._tail
        idx = self._epoch_order()[start:start + count]
        # mode="clip": the indices are valid, and it lets take() write straight into out.
        np.take(self.images, idx, axis=0, out=u8, mode="clip")
        np.take(self.labels, idx, out=y, mode="clip")
        if self.augment is not None:
            self.augment.apply(u8, out=x, rng=self.batch_rng(self.epoch, index))
            self.normalization.apply(x, out=x)
        else:
            self.normalization.apply(u8, out=x)
        return x, y

    def __iter__(self):
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        while self.position < len(self):
            index = self.position
            x, y = self._fill(index)
            self.position = index + 1
            yield x, y
        self.epoch, self.position = self.epoch + 1, 0

    def get_state(self):
        """JSON-able state: the epoch and position, plus the settings they are only valid with."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "n": self.n,
                "batch_size": self.batch_size, "shuffle": self.shuffle, "drop_last": self.drop_last}

    def set_state(self, state):
        op = "Batches.set_state"
        if not isinstance(state, dict):
            raise TypeError(f"{op}: state must be a dict from get_state(), got {type(state).__name__}")
        mine = self.get_state()
        for key in ("seed", "n", "batch_size", "shuffle", "drop_last"):
            if key not in state:
                raise ValueError(f"{op}: state is missing {key!r}")
            if state[key] != mine[key]:
                raise ValueError(f"{op}: state[{key!r}] = {state[key]!r} but these Batches have "
                                 f"{key} = {mine[key]!r}; resume with the same data and settings")
        epoch, position = state.get("epoch"), state.get("position")
        for key, v in (("epoch", epoch), ("position", position)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{op}: state[{key!r}] must be a non-negative int, got {v!r}")
        if position > len(self):
            raise ValueError(f"{op}: state['position'] = {position} but an epoch has {len(self)} batches")
        self.epoch, self.position = int(epoch), int(position)
