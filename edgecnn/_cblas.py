"""``sgemm``: OpenBLAS's cblas_sgemm called from Numba-compiled code.

Why: the Winograd conv runs, per chunk of samples, a transform, 16 GEMMs and another transform.
With np.matmul for the GEMMs every chunk went back through Python, and the chunks had to be large
(4 MiB, in L3) to pay for that. Called from compiled code, a chunk costs nothing extra, so chunks
can fit in L2, where the transforms run faster and a neighbour's use of the shared L3 costs less.

The function's address (edgecnn._blas.numpy_sgemm) is an argument, not a constant in the code, so
Numba still caches the calling kernels on disk. Callers check shapes and offsets before calling:
OpenBLAS reads and writes exactly what the arguments describe.
"""
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._jit import njit

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _make_call(bits):
    @intrinsic
    def call(typingctx, fn, ta, tb, m, n, k, a, a0, lda, b, b0, ldb, beta, c, c0, ldc):
        for arr in (a, b, c):
            if not (isinstance(arr, types.Array) and arr.dtype == types.float32):
                raise TypeError("sgemm works on float32 arrays")
        sig = types.void(fn, ta, tb, m, n, k, a, a0, lda, b, b0, ldb, beta, c, c0, ldc)

        def codegen(context, builder, sig, args):
            i32, size, f32 = ir.IntType(32), ir.IntType(bits), ir.FloatType()
            fptr = f32.as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, size, size, size, f32, fptr, size,
                                                   fptr, size, f32, fptr, size])

            def integer(i, width):
                v = context.cast(builder, args[i], sig.args[i], types.int64)
                return builder.trunc(v, ir.IntType(width)) if width < 64 else v

            def data(i):  # address of element args[i + 1] of array args[i]
                ary = context.make_array(sig.args[i])(context, builder, args[i])
                return builder.gep(ary.data, [integer(i + 1, 64)])

            target = builder.inttoptr(integer(0, 64), fnty.as_pointer())
            builder.call(target, [ir.Constant(i32, ROW_MAJOR), integer(1, 32), integer(2, 32),
                                  integer(3, bits), integer(4, bits), integer(5, bits),
                                  ir.Constant(f32, 1.0), data(6), integer(8, bits),
                                  data(9), integer(11, bits),
                                  context.cast(builder, args[12], sig.args[12], types.float32),
                                  data(13), integer(15, bits)])
            return context.get_dummy_value()
        return sig, codegen
    return call


_call64 = _make_call(64)
_call32 = _make_call(32)


@njit
def sgemm(fn, bits, trans_a, trans_b, m, n, k, a, a0, lda, b, b0, ldb, beta, c, c0, ldc):
    """c[c0:] (m x n, row stride ldc) = op(a[a0:]) @ op(b[b0:]) + beta * c, all row-major, where
    op(a) is m x k (k x m, row stride lda, when trans_a) and op(b) k x n; the arrays are read
    through their data pointers, whatever their shapes. fn, bits: edgecnn._blas.numpy_sgemm()."""
    ta = TRANS if trans_a else NO_TRANS
    tb = TRANS if trans_b else NO_TRANS
    if bits == 64:
        _call64(fn, ta, tb, m, n, k, a, a0, lda, b, b0, ldb, beta, c, c0, ldc)
    else:
        _call32(fn, ta, tb, m, n, k, a, a0, lda, b, b0, ldb, beta, c, c0, ldc)
