"""Flush-to-zero for the Numba kernels: read and write the x86-64 MXCSR register from jitted code.

Subnormal operands make the multiply/FMA units take a microcode assist (about 40x slower here), so
the kernels run like the C ones (csrc/fpenv.c) with FTZ (bit 15: subnormal results are written as 0)
and DAZ (bit 6: subnormal inputs are read as 0).  The mode is per thread: every kernel calls
:func:`flush_enter` before its task loop and :func:`flush_leave` with its result after it, on each
worker (see workers.py), because the calling thread runs tasks too and must get its own mode back.

On other architectures both are no-ops (the kernels then do not flush); the implementation is
chosen once at import from the host machine, which is also what Numba compiles for.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

FTZ_DAZ = 0x8040
X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def _mxcsr_slot(builder):
    """An i32 stack slot (entry block, so not one per loop trip) as the i8* the intrinsics take."""
    slot = cgutils.alloca_once(builder, ir.IntType(32))
    return slot, builder.bitcast(slot, ir.IntType(8).as_pointer())


def _mxcsr_fn(builder, name):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.x86.sse.{name}")


if X86_64:

    @intrinsic
    def flush_enter(typingctx):
        """Set FTZ and DAZ in this thread's MXCSR; returns the previous MXCSR for :func:`flush_leave`."""

        def codegen(context, builder, sig, args):
            slot, p = _mxcsr_slot(builder)
            builder.call(_mxcsr_fn(builder, "stmxcsr"), [p])
            old = builder.load(slot)
            builder.store(builder.or_(old, ir.Constant(ir.IntType(32), FTZ_DAZ)), slot)
            builder.call(_mxcsr_fn(builder, "ldmxcsr"), [p])
            return old

        return types.uint32(), codegen

    @intrinsic
    def flush_leave(typingctx, old):
        """Put back the MXCSR value that :func:`flush_enter` returned."""

        def codegen(context, builder, sig, args):
            slot, p = _mxcsr_slot(builder)
            builder.store(context.cast(builder, args[0], sig.args[0], types.uint32), slot)
            builder.call(_mxcsr_fn(builder, "ldmxcsr"), [p])
            return context.get_dummy_value()

        return types.none(old), codegen

    @intrinsic
    def mxcsr(typingctx):
        """This thread's MXCSR (for tests)."""

        def codegen(context, builder, sig, args):
            slot, p = _mxcsr_slot(builder)
            builder.call(_mxcsr_fn(builder, "stmxcsr"), [p])
            return builder.load(slot)

        return types.uint32(), codegen

else:

    @intrinsic
    def flush_enter(typingctx):
        """No-op off x86-64: returns 0."""

        def codegen(context, builder, sig, args):
            return ir.Constant(ir.IntType(32), 0)

        return types.uint32(), codegen

    @intrinsic
    def flush_leave(typingctx, old):
        """No-op off x86-64."""

        def codegen(context, builder, sig, args):
            return context.get_dummy_value()

        return types.none(old), codegen

    @intrinsic
    def mxcsr(typingctx):
        """0 off x86-64."""

        def codegen(context, builder, sig, args):
            return ir.Constant(ir.IntType(32), 0)

        return types.uint32(), codegen
