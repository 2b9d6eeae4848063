"""Model files: round trip, atomic writes, and every kind of corrupt, truncated or hostile file."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from edgecnn import _container
from edgecnn import io as eio


def tiny_model(seed=0):
    from edgecnn import layers as L
    from edgecnn.graph import Sequential
    return Sequential([L.Conv2D(2, 3, activation="relu"), L.MaxPool2D(2), L.Flatten(), L.Dense(10)],
                      input_shape=(1, 28, 28), seed=seed)


def preprocessing():
    from edgecnn.data import Normalization
    return {"normalization": Normalization(), "filters": None}


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.ecnn"
    model = tiny_model(3)
    eio.save(path, model, preprocessing(), metadata={"training": {"epochs": 1, "note": "x"}})
    return path, model


# ---------------------------------------------------------------------------------------------- helpers
def entries(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def write_zip(path, items, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in items.items():
            zf.writestr(name, data)


def rewrite(path, change):
    """Rewrite the container at ``path`` after ``change(entries_dict)``."""
    items = entries(path)
    change(items)
    os.unlink(path)
    write_zip(path, items)


def doc_of(items):
    return json.loads(items["document.json"])


def set_doc(items, doc):
    items["document.json"] = json.dumps(doc).encode()


def weight_ref(doc, name=None):
    weights = doc["weights"]
    name = name or sorted(weights)[0]
    return weights[name]


def npy_bytes(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def assert_bad(path, *fragments):
    with pytest.raises(eio.ModelFileError) as e:
        eio.load(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, msg
    assert "\n" not in msg
    return msg


# -------------------------------------------------------------------------------------------- round trip
def test_round_trip_keeps_everything(saved):
    path, model = saved
    clf = eio.load(path)
    assert isinstance(clf, eio.Classifier)
    a, b = model.state_dict(), clf.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert b[k].dtype == np.float32 and np.array_equal(a[k], b[k])
    assert clf.model.get_config() == model.get_config()
    assert clf.class_names == [str(i) for i in range(10)]
    assert clf.metadata["training"] == {"epochs": 1, "note": "x"}
    assert clf.metadata["edgecnn_version"]
    assert clf.preprocessing["normalization"]["kind"] == "zscore"
    assert clf.preprocessing["filters"] is None


def test_loaded_classifier_predicts_like_the_model(saved):
    from edgecnn.data import Normalization
    path, model = saved
    clf = eio.load(path)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    p = clf.predict(imgs)
    assert p.dtype == np.float32 and p.shape == (5, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    z = model.predict(Normalization().apply(imgs)).astype(np.float64)
    ref = np.exp(z - z.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(imgs.astype(np.float32)), p)   # float 0..255 same as uint8
    # a single (28, 28) image (batch 1 may sum in another order than batch 5: close, not bit-equal)
    np.testing.assert_allclose(clf.predict(imgs[0])[0], p[0], rtol=1e-5, atol=1e-7)
    labels, conf = clf.predict_classes(imgs)
    np.testing.assert_array_equal(labels, p.argmax(1))
    np.testing.assert_array_equal(conf, p.max(1))


def test_edgecnn_load_is_the_same_entry_point(saved):
    import edgecnn
    assert isinstance(edgecnn.load(saved[0]), eio.Classifier)


def test_predict_rejects_bad_images_naming_the_parameter(saved):
    clf = eio.load(saved[0])
    with pytest.raises(ValueError, match="images must have shape"):
        clf.predict(np.zeros((2, 27, 28), np.uint8))
    with pytest.raises(ValueError, match="images contain NaN"):
        clf.predict(np.full((1, 28, 28), np.nan, np.float32))
    with pytest.raises(TypeError, match="images must be uint8"):
        clf.predict(np.zeros((1, 28, 28), object))


def test_file_has_no_pickle_and_expected_layout(saved):
    items = entries(saved[0])
    assert list(items)[:2] == ["edgecnn", "document.json"]
    assert items["edgecnn"] == b"edgecnn-model 1\n"
    for name, data in items.items():
        if name.endswith(".npy"):
            assert b"'descr': '<f4'" in data[:128], name


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "m.ecnn"
    eio.save(path, tiny_model(1), preprocessing())
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask      # not mkstemp's 0600
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(eio.ModelFileError, match="disk full"):
        eio.save(path, tiny_model(2), preprocessing())
    assert path.read_bytes() == before          # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["m.ecnn"]


def test_save_refuses_non_float32_weights(tmp_path):
    model = tiny_model()

    class Wrapped:
        def state_dict(self):
            return {k: v.astype(np.float64) for k, v in model.state_dict().items()}

        def get_config(self):
            return model.get_config()
    with pytest.raises(eio.ModelFileError, match="float32"):
        eio.save(tmp_path / "x.ecnn", Wrapped(), preprocessing())


# --------------------------------------------------------------------------------------------- corruption
def test_missing_file_and_directory(tmp_path):
    assert_bad(tmp_path / "nope.ecnn", "no such file")
    assert_bad(tmp_path, "directory")


def test_empty_and_wrong_magic(tmp_path):
    p = tmp_path / "empty.ecnn"
    p.write_bytes(b"")
    assert_bad(p, "magic")
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert_bad(p, "magic")
    p.write_bytes(b"PK\x03\x04" + os.urandom(200))
    assert_bad(p)


def test_truncated_at_every_eighth(saved):
    path, _ = saved
    data = path.read_bytes()
    for i in range(1, 8):
        path.write_bytes(data[:len(data) * i // 8])
        assert_bad(path)


def test_flipped_bytes_in_weights_fail_the_crc(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    pos = data.rfind(b"NUMPY") + 200        # inside the last array's data
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_bad(path)


def test_checkpoint_is_not_a_model(tmp_path):
    p = tmp_path / "c.ckpt"
    _container.write(p, "edgecnn-checkpoint", 1, {"config": {}, "model": {}})
    assert_bad(p, "edgecnn-checkpoint", "expected a edgecnn-model")


def test_future_format_version(saved):
    path, _ = saved
    rewrite(path, lambda it: it.__setitem__("edgecnn", b"edgecnn-model 99\n"))
    assert_bad(path, "version 99")


def test_bad_json(saved):
    path, _ = saved
    rewrite(path, lambda it: it.__setitem__("document.json", b"{not json"))
    assert_bad(path, "JSON")
    rewrite(path, lambda it: it.__setitem__("document.json", b"[1, 2]"))
    assert_bad(path, "not a JSON object")
    rewrite(path, lambda it: it.__setitem__("document.json", b"\xff\xfe"))
    assert_bad(path)
    rewrite(path, lambda it: it.__setitem__("document.json", b"[" * 100000 + b"]" * 100000))
    assert_bad(path)


@pytest.mark.parametrize("key", ["architecture", "weights", "preprocessing", "class_names", "metadata"])
def test_missing_document_keys(saved, key):
    path, _ = saved

    def change(it):
        doc = doc_of(it)
        del doc[key]
        set_doc(it, doc)
    rewrite(path, change)
    assert_bad(path, key)


def test_missing_magic_document_and_array_entries(saved):
    path, _ = saved
    data = entries(path)
    for name in ["edgecnn", "document.json", next(n for n in data if n.endswith(".npy"))]:
        items = dict(data)
        del items[name]
        os.unlink(path)
        write_zip(path, items)
        assert_bad(path, "missing entry")


def test_object_dtype_is_refused_without_unpickling(saved):
    path, _ = saved

    def change(it):
        doc = doc_of(it)
        ref = weight_ref(doc)
        ref["dtype"] = "|O"
        set_doc(it, doc)
        it[ref["__array__"]] = npy_bytes(np.array([object()] * 2, dtype=object))
    rewrite(path, change)
    assert_bad(path, "not allowed")

    def change2(it):  # document says float32, the .npy is a pickle of objects
        doc = doc_of(it)
        ref = weight_ref(doc)
        ref["dtype"] = "|O"
        it[ref["__array__"]] = npy_bytes(np.array([{"a": 1}], dtype=object))
        ref["dtype"], ref["shape"] = "<f4", [1]
        set_doc(it, doc)
    rewrite(path, change2)
    assert_bad(path, "object is not allowed")


def test_wrong_dtype_and_shape(saved):
    path, _ = saved
    original = entries(path)

    def as_float64(it):
        doc = doc_of(it)
        ref = weight_ref(doc)
        ref["dtype"] = "<f8"
        it[ref["__array__"]] = npy_bytes(np.zeros(ref["shape"], np.float64))
        set_doc(it, doc)
    rewrite(path, as_float64)
    assert_bad(path, "float64", "expected float32")

    os.unlink(path)
    write_zip(path, original)

    def wrong_shape(it):  # consistent entry, but not what the architecture needs
        doc = doc_of(it)
        ref = weight_ref(doc)
        ref["shape"] = [3]
        it[ref["__array__"]] = npy_bytes(np.zeros(3, np.float32))
        set_doc(it, doc)
    rewrite(path, wrong_shape)
    assert_bad(path, "shape (3,)")

    os.unlink(path)
    write_zip(path, original)

    def header_disagrees(it):  # document and .npy header disagree
        doc = doc_of(it)
        ref = weight_ref(doc)
        it[ref["__array__"]] = npy_bytes(np.zeros(4, np.float32))
    rewrite(path, header_disagrees)
    assert_bad(path, "does not match")


def test_truncated_array_data(saved):
    path, _ = saved

    def change(it):
        ref = weight_ref(doc_of(it))
        it[ref["__array__"]] = it[ref["__array__"]][:-4]
    rewrite(path, change)
    assert_bad(path, "bytes of data")


def test_extra_and_missing_weights(saved):
    path, _ = saved
    original = entries(path)

    def extra(it):
        doc = doc_of(it)
        doc["weights"]["intruder"] = {"__array__": "arrays/999.npy", "dtype": "<f4", "shape": [2]}
        it["arrays/999.npy"] = npy_bytes(np.zeros(2, np.float32))
        set_doc(it, doc)
    rewrite(path, extra)
    assert_bad(path, "intruder")

    os.unlink(path)
    write_zip(path, original)

    def missing(it):
        doc = doc_of(it)
        name = sorted(doc["weights"])[0]
        del doc["weights"][name]
        set_doc(it, doc)
    rewrite(path, missing)
    assert_bad(path, "missing")


def test_nan_weights_are_rejected(saved):
    path, _ = saved

    def change(it):
        ref = weight_ref(doc_of(it))
        it[ref["__array__"]] = npy_bytes(np.full(ref["shape"], np.nan, np.float32))
    rewrite(path, change)
    assert_bad(path, "NaN")


def test_zip_bomb_entry_is_refused_before_decompressing(saved):
    path, _ = saved

    def change(it):
        ref = weight_ref(doc_of(it))
        it[ref["__array__"]] = b"\0" * (64 << 20)       # 64 MB of zeros deflates to ~64 KB
    items = entries(path)
    change(items)
    os.unlink(path)
    write_zip(path, items, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    assert_bad(path, "declares", "more than")


def test_huge_declared_shape_is_refused(saved):
    path, _ = saved

    def change(it):
        doc = doc_of(it)
        weight_ref(doc)["shape"] = [1 << 20, 1 << 20]
        set_doc(it, doc)
    rewrite(path, change)
    assert_bad(path, "larger than")

    def negative(it):
        doc = doc_of(it)
        weight_ref(doc)["shape"] = [-1]
        set_doc(it, doc)
    rewrite(path, negative)
    assert_bad(path, "bad shape")


def test_hostile_architecture(saved):
    path, _ = saved
    original = entries(path)

    def huge(it):
        doc = doc_of(it)
        doc["architecture"]["layers"][-1]["config"]["units"] = 10 ** 9
        set_doc(it, doc)
    rewrite(path, huge)
    assert_bad(path, "larger than")

    os.unlink(path)
    write_zip(path, original)

    def big(it):  # allowed sizes, but 354 M parameters: the build hits the memory cap, not the machine
        doc = doc_of(it)
        doc["architecture"]["layers"][-1]["config"]["units"] = 1 << 20
        set_doc(it, doc)
    rewrite(path, big)
    assert_bad(path, "does not fit in memory")

    os.unlink(path)
    write_zip(path, original)

    def unknown(it):
        doc = doc_of(it)
        doc["architecture"]["layers"][0]["class_name"] = "os.system"
        set_doc(it, doc)
    rewrite(path, unknown)
    assert_bad(path, "invalid architecture")

    os.unlink(path)
    write_zip(path, original)

    def garbage(it):
        doc = doc_of(it)
        doc["architecture"] = {"layers": "nope"}
        set_doc(it, doc)
    rewrite(path, garbage)
    assert_bad(path, "invalid architecture")


def test_bad_class_names_and_preprocessing(saved):
    path, _ = saved
    original = entries(path)
    for key, value, fragment in [("class_names", [1, 2], "class_names"),
                                 ("class_names", ["a", "b"], "2 class names"),
                                 ("preprocessing", {"normalization": "zscore"}, "preprocessing"),
                                 ("preprocessing", {"normalization": {"kind": "weird"}, "filters": None},
                                  "invalid preprocessing")]:
        os.unlink(path)
        write_zip(path, original)

        def change(it):
            doc = doc_of(it)
            doc[key] = value
            set_doc(it, doc)
        rewrite(path, change)
        assert_bad(path, fragment)


def test_encrypted_and_unsupported_compression_flags(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    # set the "encrypted" bit in every central-directory record
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        data[pos + 8] |= 1
        pos = data.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(data))
    assert_bad(path, "encrypted")


def test_container_tree_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    tree = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "t": (1, "x", None, 2.5), "b": b"\x00\xff",
            "s": np.float32(1.5), "nested": [{"__tricky": {"__array__": "not a ref"}}], "rng": rng.bit_generator.state,
            "empty": np.zeros((0, 3), np.float32), "nan": float("nan")}
    p = tmp_path / "t.bin"
    _container.write(p, "edgecnn-test", 1, tree)
    _, back = _container.read(p, "edgecnn-test", 1)
    assert back["t"] == (1, "x", None, 2.5) and back["b"] == b"\x00\xff"
    assert back["s"] == np.float32(1.5) and back["s"].dtype == np.float32
    assert back["nested"] == [{"__tricky": {"__array__": "not a ref"}}]
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["a"].dtype == np.int64 and back["empty"].shape == (0, 3)
    assert back["rng"] == rng.bit_generator.state
    assert np.isnan(back["nan"])
    with pytest.raises(TypeError, match="cannot store"):
        _container.write(tmp_path / "u.bin", "edgecnn-test", 1, {"x": object()})
    assert not (tmp_path / "u.bin").exists()
