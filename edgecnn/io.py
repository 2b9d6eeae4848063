"""Model files: weights + JSON architecture + preprocessing + class names + metadata, in one file.

The file is an edgecnn container (see ``edgecnn._container``: a zip of one JSON document and raw .npy
entries, read without pickle and validated before use) of kind ``edgecnn-model``. Its document:

    {"architecture": Model.get_config(),
     "weights": {parameter name: float32 array, ...},        # Model.state_dict()
     "preprocessing": {"normalization": Normalization.to_config(), "filters": FilterChain config or None},
     "class_names": ["0", ..., "9"],
     "metadata": {"edgecnn_version": ..., "created": ..., "training": {...}}}

``edgecnn.load(path)`` returns a ``Classifier`` that runs the stored preprocessing and the model on raw
images. Any corrupt, truncated or hostile file raises one ``ModelFileError`` naming the file.
"""
import contextlib
import datetime
import math
import os

import numpy as np

from . import _container
from ._version import __version__

KIND = "edgecnn-model"
FORMAT_VERSION = 1
DEFAULT_MODEL_PATH = "edgecnn-model.ecnn"   # where `edgecnn train` saves by default (relative to the cwd)
DEFAULT_CLASS_NAMES = tuple(str(i) for i in range(10))
# An architecture may declare no integer (units, filters, ...) above this: building it would allocate
# before the weights could be compared with it, so absurd sizes are refused up front.
MAX_ARCH_INT = 1 << 20
# Classifier batches of up to this many images run through edgecnn.inference's fast path on the CPU
# (one thread, BatchNorm folded, no per-layer validation); larger ones through Model.predict.
FAST_PATH_MAX_BATCH = 8


# Building a model allocates and initialises its parameters before they can be compared with the file's
# weights; while it builds, the address space may grow by at most this much, so a hostile architecture
# fails with MemoryError instead of swapping or being killed by the OOM killer.
BUILD_HEADROOM_BYTES = 2 << 30


@contextlib.contextmanager
def _memory_cap(headroom):
    """Temporarily cap this process's address space at its current size + ``headroom`` (Linux; a no-op
    where RLIMIT_AS or /proc is unavailable)."""
    try:
        import resource
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = vm + headroom
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft != resource.RLIM_INFINITY and soft <= cap:
            yield
            return
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError, StopIteration):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class ModelFileError(ValueError):
    """A model file that cannot be read or written; the message names the file and the problem."""


def save(path, model, preprocessing=None, class_names=DEFAULT_CLASS_NAMES, metadata=None):
    """Atomically write ``model`` with its preprocessing, class names and metadata to ``path``.

    ``preprocessing``: a dict ``{"normalization": cfg, "filters": cfg or None}``, or a
    ``Normalization`` object (then no filter chain). Returns the path.
    """
    path = os.fspath(path)
    weights = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    bad = [k for k, v in weights.items() if v.dtype != np.float32]
    if bad:
        raise ModelFileError(f"{path}: weights must be float32, got {[(k, str(weights[k].dtype)) for k in bad]}")
    names = [str(c) for c in class_names]
    doc = {
        "architecture": model.get_config(),
        "weights": weights,
        "preprocessing": _preprocessing_config(preprocessing),
        "class_names": names,
        "metadata": {"edgecnn_version": __version__,
                     "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     **(metadata or {})},
    }
    try:
        return _container.write(path, KIND, FORMAT_VERSION, doc)
    except (OSError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot write model file ({e})") from e


def _preprocessing_config(preprocessing):
    if preprocessing is None:
        return {"normalization": None, "filters": None}
    if hasattr(preprocessing, "to_config"):
        return {"normalization": preprocessing.to_config(), "filters": None}
    if not isinstance(preprocessing, dict):
        raise TypeError(f"save: preprocessing must be a dict or a Normalization, got {type(preprocessing).__name__}")
    out = {"normalization": None, "filters": None, **preprocessing}
    for key in ("normalization", "filters"):
        if hasattr(out[key], "to_config"):
            out[key] = out[key].to_config()
    return out


def read(path):
    """Read and validate a model file; returns the document dict (weights as arrays, nothing built)."""
    path = os.fspath(path)
    try:
        _, doc = _container.read(path, KIND, FORMAT_VERSION)
    except _container.ContainerError as e:
        raise ModelFileError(str(e)) from None
    _check_document(path, doc)
    return doc


def _check_document(path, doc):
    def fail(msg):
        raise ModelFileError(f"{path}: {msg}")

    if not isinstance(doc, dict):
        fail("the document is not a JSON object")
    missing = [k for k in ("architecture", "weights", "preprocessing", "class_names", "metadata") if k not in doc]
    if missing:
        fail(f"missing {', '.join(missing)}")
    if not isinstance(doc["architecture"], dict):
        fail("architecture is not a JSON object")
    big = _largest_int(doc["architecture"])
    if big > MAX_ARCH_INT:
        fail(f"architecture declares a size of {big}, larger than {MAX_ARCH_INT}")
    weights = doc["weights"]
    if not isinstance(weights, dict) or not weights:
        fail("weights must be a non-empty mapping of names to arrays")
    for name, value in weights.items():
        if not isinstance(value, np.ndarray):
            fail(f"weight {name!r} is not an array")
        if value.dtype != np.float32:
            fail(f"weight {name!r} has dtype {value.dtype}, expected float32")
    pre = doc["preprocessing"]
    if not isinstance(pre, dict) or not isinstance(pre.get("normalization"), (dict, type(None))) \
            or not isinstance(pre.get("filters"), (dict, list, type(None))):
        fail("preprocessing must be {'normalization': {...} or null, 'filters': {...} or null}")
    names = doc["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        fail("class_names must be a non-empty list of strings")
    if not isinstance(doc["metadata"], dict):
        fail("metadata is not a JSON object")


def _largest_int(tree):
    stack, big = [tree], 0
    while stack:
        t = stack.pop()
        if isinstance(t, dict):
            stack.extend(v for k, v in t.items() if k != "seed")  # seeds are not sizes
        elif isinstance(t, (list, tuple)):
            stack.extend(t)
        elif isinstance(t, int) and not isinstance(t, bool):
            big = max(big, abs(t))
        elif isinstance(t, float) and math.isfinite(t) and t.is_integer():
            big = max(big, abs(int(t)))
    return big


def load(path, device="cpu"):
    """Load a model file and return a ready-to-use ``Classifier`` on ``device`` ("cpu", "cuda" or
    "auto", see edgecnn.device; CudaUnavailableError names the fix when cuda cannot run here)."""
    path = os.fspath(path)
    if device != "cpu":
        from .device import resolve
        device = resolve(device, what=f"load({path!r}, device={device!r})")  # before reading the file
    doc = read(path)
    from .graph import Model

    try:
        with _memory_cap(BUILD_HEADROOM_BYTES):
            model = Model.from_config(doc["architecture"])
    except MemoryError:
        raise ModelFileError(f"{path}: the architecture does not fit in memory") from None
    except Exception as e:  # hostile configs can fail anywhere in building; report, never trace back
        raise ModelFileError(f"{path}: invalid architecture ({type(e).__name__}: {e})") from None
    expected = model.state_dict()
    got = doc["weights"]
    if set(expected) != set(got):
        extra, missing = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
        raise ModelFileError(f"{path}: weights do not match the architecture "
                             f"(missing {missing[:5]}, unexpected {extra[:5]})")
    for name, ref in expected.items():
        if tuple(got[name].shape) != tuple(ref.shape):
            raise ModelFileError(f"{path}: weight {name!r} has shape {tuple(got[name].shape)}, "
                                 f"the architecture needs {tuple(ref.shape)}")
    try:
        model.load_state_dict(got)
    except Exception as e:
        raise ModelFileError(f"{path}: weights rejected ({type(e).__name__}: {e})") from None
    if doc["class_names"] and len(doc["class_names"]) != _output_classes(model, len(doc["class_names"])):
        raise ModelFileError(f"{path}: {len(doc['class_names'])} class names for a model with "
                             f"{_output_classes(model, -1)} outputs")
    try:
        clf = Classifier(model, doc["preprocessing"], doc["class_names"], doc["metadata"], path=path)
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"{path}: invalid preprocessing ({type(e).__name__}: {e})") from None
    return clf.to(device)


def _output_classes(model, default):
    shape = getattr(model, "output_shape", None)
    if shape is None:
        return default
    shape = tuple(shape)
    return int(shape[-1]) if shape else default


class Classifier:
    """A trained model with its preprocessing: raw uint8 digits in, class probabilities out.

    On the CPU, batches of up to FAST_PATH_MAX_BATCH images (the live case) run through an
    ``edgecnn.inference`` plan compiled on first use; it refolds itself when the model's parameters change
    and is dropped by ``to()``. Like the model's own buffers, it serves one thread at a time."""

    def __init__(self, model, preprocessing, class_names=DEFAULT_CLASS_NAMES, metadata=None, path=None):
        self.model = model
        self.preprocessing = _preprocessing_config(preprocessing)
        self.class_names = list(class_names)
        self.metadata = dict(metadata or {})
        self.path = path
        self.input_shape = tuple(getattr(model, "input_shape", (1, 28, 28)))
        norm_cfg = self.preprocessing.get("normalization")
        filt_cfg = self.preprocessing.get("filters")
        self._norm = None
        self._chain = None
        self._plan = None  # edgecnn.inference plan, compiled at the first small CPU batch
        self._lut = None   # uint8 pixel -> normalized float32, built at the first uint8 batch
        if norm_cfg is not None:
            from .data import Normalization
            self._norm = Normalization.from_config(norm_cfg)
        if filt_cfg:
            from .filters import FilterChain
            self._chain = FilterChain.from_config(filt_cfg)

    def __repr__(self):
        where = f" from {self.path}" if self.path else ""
        return (f"<Classifier{where}: {len(self.class_names)} classes, input {self.input_shape}, "
                f"on {self.device}>")

    @property
    def device(self):
        return getattr(self.model, "device", "cpu")

    def to(self, device):
        """Run the model on ``device`` ("cpu", "cuda", "auto"); returns self. Preprocessing stays on the
        CPU (a few small images); on CUDA each ``predict`` uploads the batch and downloads the logits."""
        if device != self.device:
            self.model.to(device)
        self._plan = None
        return self

    def prepare(self, images):
        """Raw images -> the float32 (N, C, H, W) batch the model was trained on."""
        h, w = self.input_shape[-2:]
        if (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 3
                and images.shape[1:] == (h, w) and images.shape[0] > 0 and self._chain is None):
            # the live case: uint8 (N, H, W) without a filter chain is one table lookup per pixel
            return self._pixel_table()[images].reshape((len(images), 1, h, w))  # ordinary strides
        x = np.asarray(images)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        h, w = self.input_shape[-2:]
        if x.ndim != 3 or x.shape[1:] != (h, w):
            raise ValueError(f"Classifier.predict: images must have shape (N, {h}, {w}) or ({h}, {w}), "
                             f"got {np.shape(images)}")
        if x.shape[0] == 0:
            raise ValueError("Classifier.predict: images must not be empty, got shape "
                             f"{np.shape(images)}")
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
                raise TypeError(f"Classifier.predict: images must be uint8 or float 0..255, got {x.dtype}")
            x = x.astype(np.float32)
            if not np.isfinite(x).all():
                raise ValueError("Classifier.predict: images contain NaN or inf")
            if self._chain is not None or (np.all(x == np.rint(x)) and x.min() >= 0 and x.max() <= 255):
                # whole 0..255 values take the uint8 path; a filter chain was trained on uint8 images
                x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        if self._chain is not None:
            x = np.stack([np.asarray(self._chain.apply(np.ascontiguousarray(im))) for im in x])
        if self._norm is not None:
            x = self._norm.apply(x)
        else:
            x = x.astype(np.float32)[:, None]
        return np.ascontiguousarray(x, dtype=np.float32)

    def _pixel_table(self):
        """float32 (256,): what the normalization makes of each uint8 value (the same arithmetic)."""
        if self._lut is None:
            v = np.arange(256, dtype=np.uint8)
            lut = self._norm.apply(v.reshape(1, 1, 256)) if self._norm is not None else v.astype(np.float32)
            self._lut = np.ascontiguousarray(lut.reshape(256), dtype=np.float32)
        return self._lut

    def logits(self, images, batch_size=256):
        x = self.prepare(images)
        if self.device == "cpu" and len(x) <= FAST_PATH_MAX_BATCH:
            from .kernels._common import as_int
            as_int("Classifier.predict", "batch_size", batch_size, 1)  # chunks only larger batches
            if self._plan is None:
                from .inference import compile_plan
                self._plan = compile_plan(self.model, FAST_PATH_MAX_BATCH)
            return self._plan.predict(x)
        return self.model.predict(x, batch_size=batch_size)

    def predict(self, images, batch_size=256):
        """Class probabilities, float32 (N, K)."""
        z = np.asarray(self.logits(images, batch_size), dtype=np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p.astype(np.float32)

    def predict_classes(self, images, batch_size=256):
        """(labels int64 (N,), confidences float32 (N,))."""
        p = self.predict(images, batch_size)
        labels = p.argmax(axis=1)
        return labels, p[np.arange(len(p)), labels]
