"""File-system helpers shared by every atomic write (model files, checkpoints, downloads)."""
import os


def fsync_dir(path):
    """Make a rename into ``path`` durable where the platform allows it (POSIX); harmless elsewhere."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_image_path(path):
    """ValueError naming ``path`` unless OpenCV can write an image there: a known extension and an
    existing folder. Checked before any work, so a typo does not cost the result."""
    import cv2
    ext = os.path.splitext(path)[1]
    if not ext or not cv2.haveImageWriter(path):
        raise ValueError(f"cannot write {path!r}: OpenCV has no image writer for "
                         f"{repr(ext) if ext else 'a name without an extension'} (use .png, .jpg, .bmp, .tif, ...)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path!r}: folder {folder!r} does not exist")


def write_image(path, img):
    """Write ``img`` as the image file ``path`` (format from the extension), whole or not at all: encoded
    in memory, written to a temporary file in the same folder, then renamed over ``path``. ValueError
    (see check_image_path) or OSError, both naming the path."""
    import cv2
    check_image_path(path)
    ext = os.path.splitext(path)[1]
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ValueError(f"cannot write {path!r}: OpenCV could not encode a {img.dtype} {img.shape} image as {ext}")
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for cv2.imwrite
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OSError(e.errno, f"cannot write {path!r}: {e.strerror or e}") from None
        raise
    fsync_dir(folder)
