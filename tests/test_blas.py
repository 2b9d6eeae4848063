"""edgecnn._blas finds the OpenBLAS NumPy's matmul uses, even when OpenCV has loaded its own first."""
import subprocess
import sys
import textwrap


def test_numpy_openblas_is_numpys_own_copy_with_cv2_imported_first():
    code = textwrap.dedent("""
        import ctypes, glob, os, sys
        import cv2  # noqa: F401  (its wheel loads a second OpenBLAS first)
        import numpy as np
        own = glob.glob(os.path.dirname(np.__file__) + ".libs/*openblas*")
        if not own:
            print("SKIP: this NumPy has no OpenBLAS of its own in numpy.libs"); sys.exit(0)
        lib = ctypes.CDLL(own[0])
        names = [p + "_get_num_threads" + s for p in ("scipy_openblas", "openblas") for s in ("64_", "")]
        get_own = next(getattr(lib, n) for n in names if hasattr(lib, n))
        from edgecnn._blas import numpy_openblas
        get, put = numpy_openblas()
        for n in (1, 2, 1):
            put(n)
            assert get_own() == n == get(), (n, get_own(), get())
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() in ("OK",) or r.stdout.startswith("SKIP"), r.stdout
