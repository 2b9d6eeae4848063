"""Image files the CLI and `edgecnn live` write: whole or not at all, errors that name the path, and
snapshots of an earlier session kept."""
import os

import cv2
import numpy as np
import pytest

from edgecnn import _fsutil
from edgecnn.live import save_snapshot


def image(seed=0, shape=(12, 17, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("name", ["o.png", "o.bmp", "o.tif", "o.jpg"])
def test_write_image_writes_what_opencv_reads_back(tmp_path, name):
    img = image()
    path = tmp_path / name
    _fsutil.write_image(str(path), img)
    got = cv2.imread(str(path))
    if name.endswith(".jpg"):  # lossy: compare with OpenCV's own encoding of the same image
        cv2.imwrite(str(tmp_path / "ref.jpg"), img)
        np.testing.assert_array_equal(got, cv2.imread(str(tmp_path / "ref.jpg")))
    else:
        np.testing.assert_array_equal(got, img)
    assert sorted(os.listdir(tmp_path)) == sorted({name} | ({"ref.jpg"} if name.endswith(".jpg") else set()))


@pytest.mark.parametrize("name,words", [("o.xyz", ["o.xyz", "'.xyz'", "no image writer"]),
                                        ("o", ["'", "without an extension"]),
                                        ("missing/o.png", ["missing", "does not exist"])])
def test_unwritable_paths_fail_naming_them(tmp_path, name, words):
    path = str(tmp_path / name)
    with pytest.raises(ValueError) as e:
        _fsutil.write_image(path, image())
    assert path in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "o.png"
    old = image(1)
    _fsutil.write_image(str(path), old)

    def fail(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="o.png.*No space left"):
        _fsutil.write_image(str(path), image(2))
    np.testing.assert_array_equal(cv2.imread(str(path)), old)
    assert os.listdir(tmp_path) == ["o.png"]


def test_snapshots_skip_earlier_ones_and_survive_an_unwritable_folder(tmp_path):
    logs = []
    (tmp_path / "edgecnn-snapshot-000.png").write_bytes(b"an earlier session's snapshot")
    path, n = save_snapshot(str(tmp_path), image(3), 0, logs.append)
    assert path == str(tmp_path / "edgecnn-snapshot-001.png") and n == 2
    np.testing.assert_array_equal(cv2.imread(path), image(3))
    assert (tmp_path / "edgecnn-snapshot-000.png").read_bytes() == b"an earlier session's snapshot"
    path, n = save_snapshot(str(tmp_path / "gone"), image(3), n, logs.append)
    assert path is None and n == 2
    assert "snapshot not saved" in logs[-1] and "gone" in logs[-1] and "does not exist" in logs[-1]
