"""uint8 BGR->gray through edgecnn._simd.gray16_u8 (16 pixels a step): bit-exact with cv2.cvtColor for
every colour, at every size and offset, never reading past the frame (checked against a guard page),
in the plain-loop variant, and in the forms compiled for CPUs without AVX-512 (plain IR, AVX2)."""
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from edgecnn import _filter_kernels as K
from edgecnn import filters as F


def test_every_colour_equals_cvtcolor():
    v = np.arange(1 << 24, dtype=np.uint32)
    img = np.stack([v & 255, (v >> 8) & 255, v >> 16], axis=-1).astype(np.uint8).reshape(4096, 4096, 3)
    want = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    for parallel in (False, "always"):
        F.set_parallel(parallel)
        try:
            got = F.apply(img, "gray")
        finally:
            F.set_parallel(True)
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"parallel={parallel}: {len(bad)} mismatches, first at {bad[:3].tolist()}"


@pytest.mark.parametrize("fused", [False, True], ids=["gray", "fused-into-box"])
def test_sizes_and_offsets_around_the_vector_step(fused):
    # widths around multiples of 16 and of the 64-byte read; frames starting at every byte offset
    rng = np.random.default_rng(3)
    for h in (1, 2, 5):
        for w in list(range(1, 40)) + [47, 48, 63, 64, 65, 333]:
            off = int(rng.integers(0, 64))
            flat = rng.integers(0, 256, off + h * w * 3, dtype=np.uint8)
            img = flat[off:].reshape(h, w, 3)
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            if fused:
                got, want = F.apply(img, "box", ksize=3, gray=True), F.apply(gray, "box", ksize=3)
            else:
                got, want = F.apply(img, "gray"), gray
            np.testing.assert_array_equal(got, want, err_msg=f"{h}x{w} offset {off}")


def test_plain_loop_variant_equals_cvtcolor():
    img = np.random.default_rng(4).integers(0, 256, (37, 101, 3), dtype=np.uint8)
    out = np.empty((37, 101), np.uint8)
    K.to_gray_u8_loop(img, out, 1)
    np.testing.assert_array_equal(out, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))


_GUARD_PAGE = textwrap.dedent("""
    import ctypes, mmap, sys
    import numpy as np, cv2
    from edgecnn import filters as F
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    buf = mmap.mmap(-1, 2 * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert libc.mprotect(base + page, page, 0) == 0  # the second page: no access at all
    raw = np.frombuffer(buf, np.uint8, count=page)
    F.set_parallel(False)
    for w in range(1, 70):
        for h in (1, 3):
            n = h * w * 3
            img = raw[page - n:].reshape(h, w, 3)  # the frame ends where the guard page starts
            img[:] = np.arange(n, dtype=np.uint8).reshape(h, w, 3) * 7
            want = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)
            assert (F.apply(img, "gray") == want).all(), (h, w)
            g = F.apply(img, "sobel_x", gray=True)  # the fused row loader too
            assert (g == F.apply(want, "sobel_x")).all(), (h, w)
    print("ok")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through ctypes: Linux only here")
def test_never_reads_past_the_frame():
    r = subprocess.run([sys.executable, "-c", _GUARD_PAGE], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (
        f"exit {r.returncode} (a negative code is the signal: -11 is a read past the frame)\n{r.stderr[-2000:]}")


_OTHER_TARGET = textwrap.dedent("""
    import sys
    import numpy as np, cv2
    from edgecnn import _simd, filters as F
    assert (_simd._PMADDWD, _simd._PMADDWD_256) == (False, sys.argv[1] == "avx2"), (_simd._PMADDWD, _simd._PMADDWD_256)
    F.set_parallel(False)
    img = np.random.default_rng(5).integers(0, 256, (23, 250, 3), dtype=np.uint8)
    assert (F.apply(img, "gray") == cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)).all()
    assert (F.apply(img, "box", ksize=3, gray=True) == F.apply(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), "box", ksize=3)).all()
    print("ok")
""")


def _x86_features_without_avx512():
    from llvmlite import binding
    feats = binding.get_host_cpu_features()
    if not feats.get("avx2"):
        return None
    return ",".join(("+" if on and not k.startswith("avx512") else "-") + k for k, on in feats.items())


@pytest.mark.parametrize("target", ["generic", "avx2"])
def test_forms_for_cpus_without_avx512(target, tmp_path):
    # compiled for a generic CPU, the multiply-adds are plain LLVM IR; for an AVX2 CPU, two 256-bit
    # pmaddwd halves
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    if target == "generic":
        env["NUMBA_CPU_NAME"] = "generic"
    else:
        feats = _x86_features_without_avx512()
        if feats is None:
            pytest.skip("this CPU has no AVX2 to compile for")
        env["NUMBA_CPU_FEATURES"] = feats
    r = subprocess.run([sys.executable, "-c", _OTHER_TARGET, target], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
