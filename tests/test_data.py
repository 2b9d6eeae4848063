"""edgecnn.data: IDX reading and verification, load_mnist, Normalization, train_val_split, Batches."""
import gzip
import json
import shutil
import time
import tracemalloc

import numpy as np
import pytest

from edgecnn import data
from edgecnn._idx import MNIST_FILES, read_idx
from edgecnn.data import Batches, DataError, Normalization, load_mnist, train_val_split

LABELS = "t10k-labels-idx1-ubyte"


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_mnist(mnist_dir, download=False)


@pytest.fixture()
def raw_labels(mnist_dir):
    """Uncompressed bytes of the (small) canonical t10k labels file."""
    return gzip.decompress((mnist_dir / (LABELS + ".gz")).read_bytes())


# ---------------------------------------------------------------------------------------------- loading

def test_load_mnist_shapes_dtypes_and_content(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.train_labels.shape == (60000,) and mnist.train_labels.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28) and mnist.test_labels.shape == (10000,)
    # Well-known facts about the canonical files, independent of the reader.
    assert np.bincount(mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                        5851, 5949]
    assert mnist.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.test_labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
    assert mnist.train_images.flags.writeable


def test_load_mnist_is_fast(mnist_dir):
    # CPU time of the whole process (all threads): the loader's own cost, which the wall clock on this
    # shared 2-core machine can inflate several times when other jobs run (wall ~0.3-0.5 s when quiet).
    best = min(_cpu_timed(lambda: load_mnist(mnist_dir, download=False)) for _ in range(2))
    assert best < 1.0, f"loading the four files took {best:.2f} s of CPU time"


def _cpu_timed(f):
    t = time.process_time()
    f()
    return time.process_time() - t


def test_load_mnist_reads_raw_files(mnist_dir, mnist, tmp_path):
    for name in MNIST_FILES:
        (tmp_path / name).write_bytes(gzip.decompress((mnist_dir / (name + ".gz")).read_bytes()))
    raw = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(raw.train_images, mnist.train_images)
    np.testing.assert_array_equal(raw.test_labels, mnist.test_labels)


def test_load_mnist_uses_env_dir(mnist_dir, monkeypatch):
    monkeypatch.setenv("EDGECNN_DATA_DIR", str(mnist_dir))
    assert data.default_data_dir() == mnist_dir
    assert load_mnist(download=False).data_dir == mnist_dir


def test_default_dir_is_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGECNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.default_data_dir() == tmp_path / "edgecnn" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_data_dir() == tmp_path / "home" / ".cache" / "edgecnn" / "mnist"


def test_missing_files_without_download_name_them_and_the_fix(tmp_path):
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte.gz" in msg
    assert "--data-dir" in msg and "EDGECNN_DATA_DIR" in msg


def test_corrupt_file_in_data_dir_names_it(mnist_dir, tmp_path, raw_labels):
    for name in MNIST_FILES:
        shutil.copy(mnist_dir / (name + ".gz"), tmp_path)
    bad = bytearray(raw_labels)
    bad[100] ^= 1
    (tmp_path / (LABELS + ".gz")).write_bytes(gzip.compress(bytes(bad)))
    with pytest.raises(DataError, match="MD5") as e:
        load_mnist(tmp_path, download=False)
    assert str(tmp_path / (LABELS + ".gz")) in str(e.value)


# ---------------------------------------------------------------------------------- IDX verification

def _write(tmp_path, blob, name="f.idx"):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def test_read_idx_gzip_and_raw_agree(tmp_path, raw_labels):
    a = read_idx(_write(tmp_path, raw_labels), LABELS)
    b = read_idx(_write(tmp_path, gzip.compress(raw_labels), "g"), LABELS)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.frombuffer(raw_labels[8:], np.uint8))


@pytest.mark.parametrize("case, match", [
    ("flipped byte", "MD5"),
    ("bad magic", "magic"),
    ("wrong count", "dimensions"),
    ("truncated", "truncated"),
    ("trailing", "trailing"),
    ("empty", "too short"),
    ("gzip truncated", "gzip stream is truncated"),
    ("gzip garbage", "not a valid gzip"),
    ("gzip trailing", "after the gzip stream"),
    ("images file", "magic"),
])
def test_read_idx_rejects_bad_content_naming_the_file(tmp_path, raw_labels, mnist_dir, case, match):
    blob = bytearray(raw_labels)
    if case == "flipped byte":
        blob[5000] ^= 0x40
    elif case == "bad magic":
        blob[3] = 0x02
    elif case == "wrong count":
        blob[4:8] = (9999).to_bytes(4, "big")
    elif case == "truncated":
        blob = blob[:-1]
    elif case == "trailing":
        blob += b"x"
    elif case == "empty":
        blob = b""
    elif case == "gzip truncated":
        blob = gzip.compress(raw_labels)[:-20]
    elif case == "gzip garbage":
        blob = b"\x1f\x8b" + b"not gzip at all" * 10
    elif case == "gzip trailing":
        blob = gzip.compress(raw_labels) + b"junk"
    elif case == "images file":
        blob = (mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    path = _write(tmp_path, bytes(blob), "victim-file")
    with pytest.raises(DataError, match=match) as e:
        read_idx(path, LABELS)
    assert str(path) in str(e.value)
    assert isinstance(e.value, ValueError)


def test_read_idx_unreadable_path_names_it(tmp_path):
    with pytest.raises(DataError, match="cannot read") as e:
        read_idx(tmp_path / "nope", LABELS)
    assert "nope" in str(e.value)


def test_read_idx_unknown_name():
    with pytest.raises(ValueError, match="name"):
        read_idx("x", "mnist-foo")


# ---------------------------------------------------------------------------------------- normalization

def test_default_statistics_are_the_fitted_mnist_train_statistics(mnist):
    x = mnist.train_images.astype(np.float64) / 255.0  # reference: straight from the definition
    fitted = Normalization.fit(mnist.train_images)
    assert fitted.mean == pytest.approx(x.mean(), rel=1e-12)
    assert fitted.std == pytest.approx(x.std(), rel=1e-12)
    default = Normalization()
    assert default.mean == pytest.approx(fitted.mean, rel=1e-12)
    assert default.std == pytest.approx(fitted.std, rel=1e-12)
    assert default.kind == "zscore"


def test_zscore_apply_matches_float64_reference(mnist):
    imgs = mnist.test_images[:64]
    norm = Normalization(mean=0.2, std=0.5)
    y = norm.apply(imgs)
    assert y.dtype == np.float32 and y.shape == (64, 1, 28, 28) and y.flags.c_contiguous
    ref = (imgs.astype(np.float64) / 255.0 - 0.2) / 0.5
    np.testing.assert_allclose(y[:, 0], ref, rtol=0, atol=4e-7 * np.abs(ref).max() + 1e-7)
    # float32 0..255 input and (N, 1, H, W) input give bit-identical results
    np.testing.assert_array_equal(norm.apply(imgs.astype(np.float32)), y)
    np.testing.assert_array_equal(norm.apply(imgs[:, None]), y)


def test_minmax_and_fit(mnist):
    imgs = mnist.test_images[:16]
    y = Normalization("minmax").apply(imgs)
    np.testing.assert_allclose(y[:, 0], imgs / 255.0, rtol=0, atol=1e-7)
    imgs = np.full((2, 3, 3), 51, np.uint8) + np.arange(9, dtype=np.uint8).reshape(3, 3) * 10
    fitted = Normalization.fit(imgs, kind="minmax")
    assert fitted.low == pytest.approx(51 / 255) and fitted.high == pytest.approx(131 / 255)
    y = fitted.apply(np.array([[[51, 131]]], np.uint8))
    np.testing.assert_allclose(y.ravel(), [0.0, 1.0], atol=1e-6)


def test_apply_in_place_and_into_out():
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28) % 256
    expected = Normalization().apply(x.copy())
    out = np.empty_like(x)
    assert Normalization().apply(x, out=out) is out
    assert Normalization().apply(x, out=x) is x
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(out, expected)


def test_config_round_trip_is_json():
    norms = (Normalization(), Normalization(mean=0.5, std=0.25), Normalization("minmax", low=0.1, high=0.9))
    for norm in norms:
        cfg = json.loads(json.dumps(norm.to_config()))
        assert Normalization.from_config(cfg) == norm


@pytest.mark.parametrize("kwargs, param", [
    (dict(kind="l2"), "kind"),
    (dict(std=0.0), "std"),
    (dict(mean=float("nan")), "mean"),
    (dict(kind="minmax", low=0.5, high=0.5), "high"),
    (dict(kind="minmax", mean=0.1), "mean"),
    (dict(kind="zscore", low=0.1), "low"),
])
def test_normalization_bad_settings_name_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=param):
        Normalization(**kwargs)


@pytest.mark.parametrize("images, param, exc", [
    (np.zeros((2, 28, 28), np.float64), "images", TypeError),
    (np.zeros((28, 28), np.uint8), "images", ValueError),
    (np.zeros((2, 3, 28, 28), np.uint8), "images", ValueError),
    (np.zeros((0, 28, 28), np.uint8), "images", ValueError),
    ([[1, 2]], "images", TypeError),
])
def test_apply_bad_images_name_the_parameter(images, param, exc):
    with pytest.raises(exc, match=f"Normalization.apply: {param}"):
        Normalization().apply(images)


def test_apply_bad_out_names_the_parameter():
    with pytest.raises(ValueError, match="out"):
        Normalization().apply(np.zeros((2, 28, 28), np.uint8), out=np.zeros((2, 28, 28), np.float32))


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys"):
        Normalization.from_config({"kind": "zscore", "mean": 0.1, "std": 0.3, "gamma": 1})
    with pytest.raises(ValueError, match="kind"):
        Normalization.from_config({"kind": "robust"})


# ---------------------------------------------------------------------------------------- split

def test_train_val_split_is_seeded_disjoint_and_complete():
    images = np.zeros((1000, 2, 2), np.uint8)
    ids = np.arange(1000)
    images[:, 0, 0] = ids % 256
    images[:, 0, 1] = ids // 256
    labels = (ids % 10).astype(np.uint8)
    tr, trl, va, val = train_val_split(images, labels, 0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900
    got_tr = tr[:, 0, 0].astype(int) + 256 * tr[:, 0, 1].astype(int)
    got_va = va[:, 0, 0].astype(int) + 256 * va[:, 0, 1].astype(int)
    assert sorted(np.concatenate([got_tr, got_va]).tolist()) == list(range(1000))
    np.testing.assert_array_equal(trl, got_tr % 10)  # labels stay with their images
    again = train_val_split(images, labels, 0.1, seed=3)
    np.testing.assert_array_equal(again[2], va)
    other = train_val_split(images, labels, 0.1, seed=4)
    assert not np.array_equal(other[2], va)


@pytest.mark.parametrize("kwargs, param", [
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(val_fraction=-0.1), "val_fraction"),
    (dict(seed=-1), "seed"),
    (dict(labels=np.zeros(9, np.uint8)), "labels"),
    (dict(labels=np.zeros(10, np.float32)), "labels"),
])
def test_split_bad_arguments_name_the_parameter(kwargs, param):
    args = dict(images=np.zeros((10, 4, 4), np.uint8), labels=np.zeros(10, np.uint8),
                val_fraction=0.2, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=param):
        train_val_split(**args)


# ---------------------------------------------------------------------------------------- batches

def _toy(n=50, h=6, w=5):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)  # identify each image by its first pixel
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def _ids(x, norm):
    # Undo the normalization of pixel (0, 0) to recover the image id.
    return np.rint((x[:, 0, 0, 0] * norm.std + norm.mean) * 255).astype(int)


def test_batches_cover_each_image_once_per_epoch_in_seeded_order():
    images, labels = _toy()
    norm = Normalization()
    b = Batches(images, labels, 8, seed=1, normalization=norm)
    assert len(b) == 7
    epochs = []
    for _ in range(2):
        seen = []
        for x, y in b:
            assert x.dtype == np.float32 and x.shape[1:] == (1, 6, 5) and y.dtype == np.int32
            ids = _ids(x, norm)
            np.testing.assert_array_equal(y, ids % 10)
            np.testing.assert_array_equal(x, norm.apply(images[ids]))
            seen.extend(ids.tolist())
        assert sorted(seen) == list(range(50))
        epochs.append(seen)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(50))
    again = [_ids(x, norm).tolist() for x, _ in Batches(images, labels, 8, seed=1)]
    assert sum(again, []) == epochs[0]
    other = [_ids(x, norm).tolist() for x, _ in Batches(images, labels, 8, seed=2)]
    assert sum(other, []) != epochs[0]


def test_batches_no_shuffle_and_drop_last():
    images, labels = _toy()
    norm = Normalization()
    b = Batches(images, labels, 8, shuffle=False, drop_last=True)
    assert len(b) == 6
    ids = [_ids(x, norm).tolist() for x, _ in b]
    assert sum(ids, []) == list(range(48))
    sizes = [len(y) for _, y in Batches(images, labels, 8, shuffle=False)]
    assert sizes == [8] * 6 + [2]


def test_batches_reuse_buffers_and_allocate_nothing_per_step():
    images, labels = _toy(n=2000, h=28, w=28)
    b = Batches(images, labels, 256, drop_last=True)
    it = iter(b)
    x0, y0 = next(it)
    ptr = (x0.__array_interface__["data"][0], y0.__array_interface__["data"][0])
    next(it)
    tracemalloc.start()
    try:
        for _ in range(5):
            x, y = next(it)
            assert (x.__array_interface__["data"][0], y.__array_interface__["data"][0]) == ptr
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A batch is 256*784*4 = 800 kB. A step allocates no arrays: what remains is NumPy's fixed
    # 8192-element scratch buffer for the uint8 -> float32 cast (32 kB) and a few Python objects.
    assert peak < 48_000, f"a step allocated {peak} bytes"


def test_batches_resume_mid_epoch_is_bit_identical():
    images, labels = _toy(n=45)
    full = Batches(images, labels, 8, seed=5)
    reference = [(x.copy(), y.copy()) for _ in range(3) for x, y in full]

    first = Batches(images, labels, 8, seed=5)
    got = []
    for _ in range(1):
        got += [(x.copy(), y.copy()) for x, y in first]
    for i, (x, y) in enumerate(first):  # interrupted in epoch 1 after 3 batches
        got.append((x.copy(), y.copy()))
        if i == 2:
            break
    state = json.loads(json.dumps(first.get_state()))
    assert state["epoch"] == 1 and state["position"] == 3

    resumed = Batches(images, labels, 8, seed=5)
    resumed.set_state(state)
    for _ in range(2):
        got += [(x.copy(), y.copy()) for x, y in resumed]
    assert len(got) == len(reference)
    for (a, ya), (b, yb) in zip(got, reference):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)


def test_state_at_end_of_epoch_continues_with_next_epoch():
    images, labels = _toy(n=16)
    a = Batches(images, labels, 8, seed=0)
    states = []
    for _ in a:
        states.append(a.get_state())
    assert states[-1]["position"] == 2 and states[-1]["epoch"] == 0
    b = Batches(images, labels, 8, seed=0)
    b.set_state(states[-1])
    c = Batches(images, labels, 8, seed=0)
    list(c)
    xb = [x.copy() for x, _ in b]
    xc = [x.copy() for x, _ in c]
    assert len(xb) == len(xc) == 2
    for x1, x2 in zip(xb, xc):
        np.testing.assert_array_equal(x1, x2)
    assert b.get_state() == c.get_state() == {**states[-1], "epoch": 2, "position": 0}


@pytest.mark.parametrize("state, key", [
    (dict(seed=9), "seed"),
    (dict(batch_size=4), "batch_size"),
    (dict(n=10), "n"),
    (dict(position=99), "position"),
    (dict(epoch=-1), "epoch"),
])
def test_set_state_mismatch_names_the_field(state, key):
    images, labels = _toy()
    b = Batches(images, labels, 8)
    with pytest.raises(ValueError, match=key):
        b.set_state({**b.get_state(), **state})


@pytest.mark.parametrize("kwargs, param, exc", [
    (dict(batch_size=0), "batch_size", ValueError),
    (dict(batch_size=2.0), "batch_size", ValueError),
    (dict(seed=-3), "seed", ValueError),
    (dict(images=np.zeros((50, 6, 5), np.float32)), "images", TypeError),
    (dict(labels=np.zeros(49, np.uint8)), "labels", ValueError),
    (dict(normalization="zscore"), "normalization", TypeError),
    (dict(augment=object()), "augment", TypeError),
    (dict(batch_size=64, drop_last=True), "drop_last", ValueError),
])
def test_batches_bad_arguments_name_the_parameter(kwargs, param, exc):
    images, labels = _toy()
    args = dict(images=images, labels=labels, batch_size=8)
    args.update(kwargs)
    with pytest.raises(exc, match=param):
        Batches(**args)


def test_import_data_does_not_import_numba():
    import subprocess
    import sys
    code = "import sys, edgecnn.data; print('numba' in sys.modules, 'cv2' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr
