"""Frame sources for ``edgecnn live`` behind one interface, and the capture thread that feeds them.

A source is a camera index, a video file, a folder of images or a stream URL (``open_source`` picks).
``Capture`` reads it on its own thread and hands the main thread frames: for live sources only the newest
frame is kept (older unread ones are counted as dropped); files and folders are read losslessly, at the
pace of the consumer. The capture thread only captures: kernels run on the main thread alone (Numba's
workqueue threading layer aborts when two threads enter parallel code).
"""
import os
import pathlib
import threading
import time

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
OPEN_TIMEOUT = 4.0  # seconds; a camera that won't open fails well inside the 5 s promise


class SourceError(RuntimeError):
    """A source could not be opened or read; the message names the source and the backend."""


class FrameSource:
    """Interface: ``open()`` (raises SourceError), ``read() -> frame or None``, ``release()``.

    ``finished`` becomes True at the end of a file or folder (a None read is then the end, not a failure);
    ``live`` is True for cameras and streams (newest frame wins, reconnect on failure).
    """
    live = False
    backend = "none"

    def __init__(self, name):
        self.name = name
        self.finished = False

    def describe(self):
        return f"{self.name} (backend {self.backend})"

    def open(self):
        raise NotImplementedError

    def read(self):
        raise NotImplementedError

    def release(self):
        pass

    @property
    def fps(self):
        return None


def _quiet_cv2():
    import cv2
    try:  # OpenCV prints a warning per failed backend; our own message says what failed
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass
    return cv2


class _CvSource(FrameSource):
    """Shared code of the cv2.VideoCapture sources."""

    def __init__(self, name, target, api=None, backend_name="any", timeout=OPEN_TIMEOUT):
        super().__init__(name)
        self.target = target
        self.api = api
        self.backend = backend_name
        self.timeout = timeout
        self.cap = None

    def _open_capture(self):
        cv2 = _quiet_cv2()
        api = cv2.CAP_ANY if self.api is None else self.api
        return cv2.VideoCapture(self.target, api)

    def open(self):
        # VideoCapture can block for long on a dead device or URL: open on a helper thread, give up in time.
        box = {}

        def attempt():
            try:
                box["cap"] = self._open_capture()
            except Exception as e:  # cv2.error and friends
                box["error"] = e

        t = threading.Thread(target=attempt, name="edgecnn-open", daemon=True)
        start = time.monotonic()
        t.start()
        t.join(self.timeout)
        if t.is_alive():
            raise SourceError(f"cannot open {self.describe()}: no answer within {self.timeout:.1f} s")
        if "error" in box:
            raise SourceError(f"cannot open {self.describe()}: {box['error']}")
        cap = box["cap"]
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.describe()}{self._hint()}")
        try:
            self.backend = cap.getBackendName()
        except Exception:  # older OpenCV builds
            pass
        self.cap = cap
        self.open_seconds = time.monotonic() - start

    def _hint(self):
        return ""

    def read(self):
        if self.cap is None:
            return None
        ok, frame = self.cap.read()
        return frame if ok else None

    def release(self):
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    @property
    def fps(self):
        if self.cap is None:
            return None
        import cv2
        v = self.cap.get(cv2.CAP_PROP_FPS)
        return v if v and v > 0 else None


class CameraSource(_CvSource):
    live = True

    def __init__(self, index=0, width=None, height=None, timeout=OPEN_TIMEOUT):
        import sys
        cv2 = _quiet_cv2()
        api, bname = (cv2.CAP_V4L2, "V4L2") if sys.platform.startswith("linux") else (None, "any")
        super().__init__(f"camera {index}", int(index), api, bname, timeout)
        self.width, self.height = width, height

    def _open_capture(self):
        cap = super()._open_capture()
        if cap.isOpened():
            import cv2
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue would add latency
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return cap

    def _hint(self):
        dev = f"/dev/video{self.target}"
        if not os.path.exists(dev):
            return f": {dev} does not exist (no camera attached, or not passed into the container)"
        return f": {dev} exists but could not be opened (busy, or no permission)"


class VideoFileSource(_CvSource):
    def __init__(self, path, timeout=OPEN_TIMEOUT):
        cv2 = _quiet_cv2()
        super().__init__(f"video file {path}", str(path), cv2.CAP_FFMPEG, "FFMPEG", timeout)

    def read(self):
        frame = super().read()
        if frame is None:
            self.finished = True  # a file that stops giving frames has ended; no reconnect
        return frame


class StreamSource(_CvSource):
    live = True

    def __init__(self, url, timeout=OPEN_TIMEOUT):
        cv2 = _quiet_cv2()
        super().__init__(f"stream {url}", str(url), cv2.CAP_FFMPEG, "FFMPEG", timeout)


class ImageFolderSource(FrameSource):
    """Every image of a folder, in name order."""
    backend = "imread"

    def __init__(self, folder):
        super().__init__(f"image folder {folder}")
        self.folder = pathlib.Path(folder)
        self.files = []
        self.pos = 0

    def open(self):
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self.files:
            raise SourceError(f"cannot open {self.describe()}: no images ({', '.join(IMAGE_EXTS)})")
        self.pos = 0

    def read(self):
        import cv2
        while self.pos < len(self.files):
            p = self.files[self.pos]
            self.pos += 1
            frame = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
        self.finished = True
        return None


def open_source(spec, timeout=OPEN_TIMEOUT):
    """A FrameSource for ``spec``: an int or digit string (camera index), a URL (``scheme://``), a folder,
    or a video file. Raises SourceError for paths that do not exist; does not open the source yet."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return CameraSource(int(spec), timeout=timeout)
    if isinstance(spec, FrameSource):
        return spec
    s = os.fspath(spec)
    if "://" in s:
        return StreamSource(s, timeout=timeout)
    p = pathlib.Path(s)
    if p.is_dir():
        return ImageFolderSource(p)
    if p.is_file():
        return VideoFileSource(p, timeout=timeout)
    raise SourceError(f"cannot open {s}: no such file, folder or camera index "
                      f"(give a camera index such as 0, a video file, an image folder or a stream URL)")


class Capture:
    """Reads ``source`` on a daemon thread. ``get()`` returns (index, frame, read_ms) or None at the end.

    Live sources keep only the newest frame (``dropped`` counts the ones the consumer never saw) and,
    after ``failures`` failed reads in a row, reconnect with exponential backoff (``backoff`` seconds,
    doubling up to ``max_backoff``) up to ``reconnects`` times, then end with ``error`` set.
    """

    def __init__(self, source, reconnects=5, failures=3, backoff=0.2, max_backoff=2.0, log=None):
        self.source = source
        self.reconnects = reconnects
        self.failures = failures
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.log = log or (lambda msg: None)
        self.dropped = 0
        self.read_count = 0
        self.reconnect_count = 0
        self.error = None
        self.ended = False
        self._slot = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)

    def start(self):
        self._thread.start()
        return self

    # -- capture thread -------------------------------------------------------------------------------
    def _put(self, item):
        with self._cond:
            if not self.source.live:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.1)  # files: wait for the consumer, lose nothing
            elif self._slot is not None:
                self.dropped += 1
            self._slot = item
            self._cond.notify_all()

    def _run(self):
        failed = 0
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                frame = self.source.read()
                t1 = time.perf_counter()
                if frame is not None:
                    failed = 0
                    self._put((self.read_count, frame, (t1 - t0) * 1e3))
                    self.read_count += 1
                    continue
                if self.source.finished or not self.source.live:
                    break
                failed += 1
                if failed >= self.failures and not self._reconnect():
                    break
        except Exception as e:  # a crashing backend ends the run with a message, not a hang
            self.error = f"{self.source.describe()}: {type(e).__name__}: {e}"
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def _reconnect(self):
        delay = self.backoff
        for attempt in range(1, self.reconnects + 1):
            self.log(f"{self.source.describe()}: reads failing, reconnect {attempt}/{self.reconnects} "
                     f"in {delay:.1f} s")
            if self._stop.wait(delay):
                return False
            self.source.release()
            self.reconnect_count += 1
            try:
                self.source.open()
                return True
            except SourceError as e:
                self.log(str(e))
            delay = min(delay * 2, self.max_backoff)
        self.error = (f"{self.source.describe()}: gave up after {self.reconnects} reconnects "
                      f"(reads kept failing)")
        return False

    # -- main thread ----------------------------------------------------------------------------------
    def get(self, timeout=None):
        """The next frame (newest for live sources) as (index, frame, read_ms); None once the source has
        ended and every frame was handed out, or on timeout (check ``ended``)."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._slot is None and not self.ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(0.05 if left is None else min(left, 0.05))
            item, self._slot = self._slot, None
            self._cond.notify_all()
            return item

    def stop(self, timeout=1.0):
        """Stop the thread and release the source (within ``timeout`` unless a read is stuck in a driver)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.source.release()
            return True
        return False  # a read is stuck inside the backend; the daemon thread dies with the process
