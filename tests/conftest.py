import os
import pathlib
import signal
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # so tests can `import reference`


def _mnist_dir():
    env = os.environ.get("EDGECNN_DATA_DIR")
    if env:
        return pathlib.Path(env)
    shared = HERE.parent.parent / "shared" / "data" / "mnist"
    return shared if shared.is_dir() else None


@pytest.fixture(scope="session")
def mnist_dir():
    """The folder holding the real MNIST IDX files (EDGECNN_DATA_DIR, else ../shared/data/mnist)."""
    d = _mnist_dir()
    found = d is not None and any((d / f).exists() for f in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"))
    if not found and os.environ.get("EDGECNN_DATA_DIR"):
        # An explicit setting that points nowhere is a misconfiguration (CI sets it): fail, don't skip.
        pytest.fail(f"EDGECNN_DATA_DIR={os.environ['EDGECNN_DATA_DIR']} holds no MNIST IDX files")
    if not found:
        pytest.skip("MNIST files not found: set EDGECNN_DATA_DIR to a folder holding the IDX files")
    return d


def default_sigint():
    """preexec_fn for children that must take Ctrl-C: SIGINT back to its default. A pytest started as
    a background job of a non-interactive shell inherits SIGINT ignored, and so would its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_raises():
    """Python's own SIGINT handler for the test (raising KeyboardInterrupt), whatever this process
    inherited: with SIGINT ignored, _thread.interrupt_main() does nothing."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)
