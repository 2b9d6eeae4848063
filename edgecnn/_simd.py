"""``gray16_u8``: 16 BGR uint8 pixels to gray in a few vector instructions, as a Numba intrinsic.

Why: LLVM vectorizes the plain loop (b * 3735 + g * 19235 + r * 9798 + 16384) >> 15 one int32 lane
per pixel, after pulling the three channels apart. OpenCV's layout of the same arithmetic pairs
channels instead: the bytes are shuffled straight into 16-bit (b, g) and (r, 1) pairs, and one
multiply-add of pairs (x86 pmaddwd) per pair gives b * 3735 + g * 19235 and r * 9798 + 16384 in
int32. On AVX-512 (VBMI shuffles the 64 bytes in one instruction) a 640x480 frame takes 0.080 ns
per pixel against 0.223 for the loop and 0.243 for cv2.cvtColor. The arithmetic is the same
integers as OpenCV's, so results are bit-exact.

Where the compile target lacks AVX-512BW but has AVX2, pmaddwd runs on two 256-bit halves (60 us
against the loop's 73 when compiled for AVX2 on the same machine: without VBMI the byte shuffles
cost more). Elsewhere the same vectors are written in plain LLVM IR (widen, multiply, add),
correct on any CPU; LLVM picks the instructions (71 against 73 us compiled for AVX2 that way).
"""
import hashlib

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

I8, I16, I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
WEIGHTS_BG = (3735, 19235)  # Q15 (cvtColor's BGR2GRAY for uint8)
WEIGHTS_R1 = (9798, 16384)  # r's weight and the rounding term, paired with a constant 1


def target_has(feature):
    """Whether Numba compiles for a CPU with ``feature`` (an LLVM feature name, e.g. "avx512bw")."""
    from llvmlite import binding
    from numba.core import config
    if config.CPU_FEATURES is not None:
        return ("+" + feature) in config.CPU_FEATURES.split(",")
    if config.CPU_NAME not in (None, "host"):  # a named target without features: assume not
        return False
    return bool(binding.get_host_cpu_features().get(feature))


_PMADDWD = target_has("avx512bw")
_PMADDWD_256 = not _PMADDWD and target_has("avx2")

with open(__file__, "rb") as _f:  # part of the callers' compiled names: Numba checks only the caller's
    TAG = hashlib.sha1(_f.read()).hexdigest()[:8]  # own file before reusing its disk cache


def _const(t, values):
    return ir.Constant(ir.VectorType(t, len(values)), [ir.Constant(t, v) for v in values])


def _pairs_dot(builder, pairs, weights):
    """<16 x i32>: each i32 lane = pairs[2j] * weights[2j] + pairs[2j+1] * weights[2j+1] (i16 lanes)."""
    if _PMADDWD:
        v = ir.VectorType(I16, 32)
        fnty = ir.FunctionType(ir.VectorType(I32, 16), [v, v])
        fn = builder.module.globals.get("llvm.x86.avx512.pmaddw.d.512") or ir.Function(
            builder.module, fnty, "llvm.x86.avx512.pmaddw.d.512")
        return builder.call(fn, [pairs, weights])
    if _PMADDWD_256:  # two 256-bit halves
        v = ir.VectorType(I16, 16)
        fnty = ir.FunctionType(ir.VectorType(I32, 8), [v, v])
        fn = builder.module.globals.get("llvm.x86.avx2.pmadd.wd") or ir.Function(
            builder.module, fnty, "llvm.x86.avx2.pmadd.wd")
        halves = []
        for h in (0, 1):
            idx = _const(I32, list(range(16 * h, 16 * h + 16)))
            halves.append(builder.call(fn, [builder.shuffle_vector(pairs, pairs, idx),
                                            builder.shuffle_vector(weights, weights, idx)]))
        return builder.shuffle_vector(halves[0], halves[1], _const(I32, list(range(16))))
    v32 = ir.VectorType(I32, 16)
    out = None
    for half in (0, 1):
        idx = _const(I32, [2 * j + half for j in range(16)])
        p = builder.sext(builder.shuffle_vector(pairs, pairs, idx), v32)
        w = builder.sext(builder.shuffle_vector(weights, weights, idx), v32)
        t = builder.mul(p, w)
        out = t if out is None else builder.add(out, t)
    return out


_OUT_TYPES = (types.uint8, types.int16, types.uint16, types.int32, types.float32)


@intrinsic
def gray16_u8(typingctx, src, si, out, oi):
    """out[oi:oi+16] = gray of the BGR bytes src[si:si+48]; reads src[si:si+64] (the caller makes
    sure those 64 bytes are inside src). src: a 1-D contiguous uint8 array; out: 1-D contiguous
    uint8, int16, uint16, int32 or float32 (the gray values 0..255 converted)."""
    if not (isinstance(src, types.Array) and src.dtype == types.uint8 and src.ndim == 1 and src.layout == "C"):
        raise TypeError(f"gray16_u8: src must be a 1-D contiguous uint8 array, got {src}")
    if not (isinstance(out, types.Array) and out.dtype in _OUT_TYPES and out.ndim == 1 and out.layout == "C"):
        raise TypeError(f"gray16_u8: out must be a 1-D contiguous array of {_OUT_TYPES}, got {out}")
    sig = types.void(src, si, out, oi)

    def codegen(context, builder, sig, args):
        s = context.make_array(sig.args[0])(context, builder, args[0])
        o = context.make_array(sig.args[2])(context, builder, args[2])
        si_ = context.cast(builder, args[1], sig.args[1], types.intp)
        oi_ = context.cast(builder, args[3], sig.args[3], types.intp)
        v = builder.load(builder.bitcast(builder.gep(s.data, [si_]), ir.VectorType(I8, 64).as_pointer()),
                         align=1)
        zero_one = _const(I8, [0, 1] + [0] * 62)  # lanes 64 and 65 of the shuffles' second operand
        bg, r1 = [], []
        for j in range(16):  # little-endian 16-bit pairs: (b, g) and (r, 1)
            bg += [3 * j, 64, 3 * j + 1, 64]
            r1 += [3 * j + 2, 64, 65, 64]
        v16 = ir.VectorType(I16, 32)
        bg = builder.bitcast(builder.shuffle_vector(v, zero_one, _const(I32, bg)), v16)
        r1 = builder.bitcast(builder.shuffle_vector(v, zero_one, _const(I32, r1)), v16)
        acc = builder.add(_pairs_dot(builder, bg, _const(I16, WEIGHTS_BG * 16)),
                          _pairs_dot(builder, r1, _const(I16, WEIGHTS_R1 * 16)))
        gray = builder.lshr(acc, _const(I32, [15] * 16))  # 0..255 in each i32 lane
        elem = context.get_value_type(sig.args[2].dtype)
        vout = ir.VectorType(elem, 16)
        if sig.args[2].dtype == types.float32:
            gray = builder.uitofp(gray, vout)
        elif elem.width < 32:
            gray = builder.trunc(gray, vout)
        builder.store(gray, builder.bitcast(builder.gep(o.data, [oi_]), vout.as_pointer()), align=1)
        return context.get_dummy_value()
    return sig, codegen
