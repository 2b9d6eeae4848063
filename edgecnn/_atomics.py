"""Atomic int64 operations on NumPy arrays, a CPU spin hint and raw-address arrays, as Numba
intrinsics (Numba itself has no CPU atomics). Used by edgecnn._spin_pool, whose threads share one
int64 control array.

Every operation is sequentially consistent: the pool's handshakes are a few per call, so the
cost of the strongest ordering does not show, and nothing has to be argued about weaker ones.
A plain load in a spin loop would not do: LLVM may hoist it out of the loop.
"""
import platform
import sys

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_SEQ = "seq_cst"
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
# sched_yield is called by name: the JIT links it from the C library already in the process, and
# the compiled code holds no process-specific address, so Numba can still cache it on disk.
_HAS_SCHED_YIELD = sys.platform.startswith(("linux", "darwin", "freebsd"))


def _slot(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.gep(ary.data, [idx])


def _check(arr, idx):
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and isinstance(idx, types.Integer)):
        raise TypeError("atomics work on int64 arrays with an integer index")


@intrinsic
def atomic_load(typingctx, arr, idx):
    """arr[idx], read atomically."""
    _check(arr, idx)

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot(context, builder, sig.args[0], *args), _SEQ, 8)
    return types.int64(arr, idx), codegen


@intrinsic
def atomic_store(typingctx, arr, idx, val):
    """arr[idx] = val, written atomically."""
    _check(arr, idx)

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(v, _slot(context, builder, sig.args[0], args[0], args[1]), _SEQ, 8)
        return context.get_dummy_value()
    return types.void(arr, idx, val), codegen


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """If arr[idx] == expected, set it to new; returns the value found (== expected on success)."""
    _check(arr, idx)

    def codegen(context, builder, sig, args):
        e = context.cast(builder, args[2], sig.args[2], types.int64)
        n = context.cast(builder, args[3], sig.args[3], types.int64)
        res = builder.cmpxchg(_slot(context, builder, sig.args[0], args[0], args[1]), e, n, _SEQ, _SEQ)
        return builder.extract_value(res, 0)
    return types.int64(arr, idx, expected, new), codegen


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """arr[idx] += val atomically; returns the value before."""
    _check(arr, idx)

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", _slot(context, builder, sig.args[0], args[0], args[1]), v, _SEQ)
    return types.int64(arr, idx, val), codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 PAUSE): a spinning thread yields pipeline resources and
    power; elsewhere nothing."""
    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def address_as_pointer(typingctx, addr, like):
    """The integer address ``addr`` as a pointer to ``like``'s dtype (for numba.carray)."""
    if not (isinstance(addr, types.Integer) and isinstance(like, types.Array)):
        raise TypeError("address_as_pointer(int, array)")
    ptrty = types.CPointer(like.dtype)

    def codegen(context, builder, sig, args):
        a = context.cast(builder, args[0], sig.args[0], types.intp)
        return builder.inttoptr(a, context.get_value_type(ptrty))
    return ptrty(addr, like), codegen


@intrinsic
def os_yield(typingctx):
    """sched_yield() where the C library has it (elsewhere nothing): a spinning thread lets any other
    runnable thread on its core go first (another library's pool worker, for one), instead of
    holding the core until the scheduler's next tick."""
    def codegen(context, builder, sig, args):
        if _HAS_SCHED_YIELD:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen
