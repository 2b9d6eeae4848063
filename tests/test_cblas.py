"""edgecnn._cblas.sgemm (OpenBLAS's sgemm called from compiled code) against a float64 NumPy product:
both transposes, element offsets into flat buffers, padded row strides, beta 0 and 1, and that it
writes nothing outside the output block."""
import numpy as np
import pytest

from edgecnn._blas import numpy_sgemm
from edgecnn._cblas import sgemm
from edgecnn._jit import njit

FN, BITS = numpy_sgemm()
pytestmark = pytest.mark.skipif(not FN, reason="no OpenBLAS sgemm found behind NumPy")


@njit
def _call(fn, bits, ta, tb, m, n, k, a, a0, lda, b, b0, ldb, beta, c, c0, ldc):
    sgemm(fn, bits, ta, tb, m, n, k, a, a0, lda, b, b0, ldb, beta, c, c0, ldc)


def _block(buf, off, rows, cols, ld):
    return buf[off:off + rows * ld].reshape(rows, ld)[:, :cols]


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (5, 7, 3), (48, 49, 24), (17, 300, 96)])
def test_matches_float64_product(ta, tb, beta, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    lda, ldb, ldc = (m if ta else k) + 3, (k if tb else n) + 1, n + 2
    a0, b0, c0 = 5, 11, 7
    a = rng.standard_normal(a0 + (k if ta else m) * lda + 8).astype(np.float32)
    b = rng.standard_normal(b0 + (n if tb else k) * ldb + 8).astype(np.float32)
    c = rng.standard_normal(c0 + m * ldc + 8).astype(np.float32)
    before = c.copy()
    A = _block(a, a0, k if ta else m, m if ta else k, lda)
    B = _block(b, b0, n if tb else k, k if tb else n, ldb)
    want = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
    want += beta * _block(before, c0, m, n, ldc)
    _call(FN, BITS, ta, tb, m, n, k, a, a0, lda, b, b0, ldb, np.float32(beta), c, c0, ldc)
    np.testing.assert_allclose(_block(c, c0, m, n, ldc), want, rtol=1e-5, atol=1e-4)
    outside = np.ones(c.size, bool)
    _block(outside, c0, m, n, ldc)[:] = False
    assert np.array_equal(c[outside], before[outside])
