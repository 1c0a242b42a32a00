"""Explicit SIMD vectors for Numba kernels: a vector type and a handful of intrinsics.

Why not plain loops: written as ``for j in range(NR): acc[i, j] += a * b[j]``, LLVM (as driven by
Numba, whose SLP vectorizer is off) fully unrolls the tile before the loop vectorizer runs and then
vectorizes the wrong loop (gathers along K, accumulators spilled to the stack): 14.6 GFLOP/s for a
256^3 GEMM here.  A vector value type makes the register tile explicit, like C intrinsics, and is
still compiled by Numba alone (no C compiler).

A vector holds ``lanes(arr)`` elements of the array's dtype: 64 bytes on AVX-512 machines, 32 bytes
otherwise (LLVM splits or widens as the CPU needs; only the register budget changes).  Every
intrinsic here is element-wise and IEEE-exact apart from :func:`vfma`, which rounds once (what the
``contract`` fast-math flag would allow); nothing reassociates, and NaN/Inf propagate as in scalar code.
"""

from __future__ import annotations

import llvmlite.binding as llb
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _vector_bytes() -> int:
    features = llb.get_host_cpu_features()
    return 64 if features.get("avx512f", False) else 32


VECTOR_BYTES = _vector_bytes()


class Vec(types.Type):
    """A SIMD register of ``lanes`` values of ``dtype`` (a Numba scalar type)."""

    def __init__(self, dtype: types.Type, lanes: int) -> None:
        self.dtype = dtype
        self.lanes = lanes
        super().__init__(name=f"Vec({dtype}x{lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        elem = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(elem, fe_type.lanes))


class Mask(types.Type):
    """Which lanes of a vector a masked load touches (compute once, outside the loop that uses it)."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        super().__init__(name=f"Mask({lanes})")


@register_model(Mask)
class _MaskModel(models.PrimitiveModel):
    # an integer bitmask, not <lanes x i1>: LLVM would sink a vector compare into the loop that uses it
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.IntType(fe_type.lanes))


def _vec_of(arr) -> Vec:
    return Vec(arr.dtype, VECTOR_BYTES // arr.dtype.bitwidth * 8)


def _ptr(context, builder, arrty, arr, idx, idxty):
    ary = context.make_array(arrty)(context, builder, arr)
    i = context.cast(builder, idx, idxty, types.intp)
    return builder.gep(ary.data, [i])


def _lane_mask(builder, lanes, lo, hi):
    """<lanes x i1>: lo <= lane < hi."""
    i64 = ir.IntType(64)
    idx = ir.Constant(ir.VectorType(i64, lanes), [ir.Constant(i64, k) for k in range(lanes)])
    vlo = _splat(builder, lo, lanes)
    vhi = _splat(builder, hi, lanes)
    return builder.and_(builder.icmp_signed(">=", idx, vlo), builder.icmp_signed("<", idx, vhi))


def _splat(builder, value, lanes):
    vty = ir.VectorType(value.type, lanes)
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _vec_suffix(vty) -> str:
    return f"v{vty.count}{'f32' if vty.element == ir.FloatType() else 'f64'}"


def _masked_intrinsic(builder, op, vty):
    suffix = f"{_vec_suffix(vty)}.p0"
    ptr = vty.as_pointer()
    mask = ir.VectorType(ir.IntType(1), vty.count)
    i32 = ir.IntType(32)
    if op == "load":
        fnty = ir.FunctionType(vty, [ptr, i32, mask, vty])
    else:
        fnty = ir.FunctionType(ir.VoidType(), [vty, ptr, i32, mask])
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.{op}.{suffix}")


@intrinsic
def lanes(typingctx, arr):
    """Number of lanes of a vector of ``arr``'s dtype (a compile-time constant)."""
    n = _vec_of(arr).lanes

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, n)

    return types.intp(arr), codegen


@intrinsic
def vzero(typingctx, arr):
    """A vector of zeros of ``arr``'s dtype."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)

    return vt(arr), codegen


@intrinsic
def vsplat(typingctx, arr, value):
    """A vector with every lane equal to ``value`` (converted to ``arr``'s dtype)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[1], sig.args[1], vt.dtype)
        return _splat(builder, v, vt.lanes)

    return vt(arr, value), codegen


@intrinsic
def vbroadcast(typingctx, arr, idx):
    """A vector with every lane equal to ``arr[idx]`` (flat index into a contiguous array)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        v = builder.load(_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1]))
        return _splat(builder, v, vt.lanes)

    return vt(arr, idx), codegen


@intrinsic
def vload(typingctx, arr, idx):
    """``arr[idx : idx + lanes]`` (flat, unaligned) as a vector."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        vty = context.get_value_type(vt)
        return builder.load(builder.bitcast(p, vty.as_pointer()), align=vt.dtype.bitwidth // 8)

    return vt(arr, idx), codegen


@intrinsic
def vload_n(typingctx, arr, idx, n):
    """Lanes ``0 <= k < n`` from ``arr[idx + k]``, zeros elsewhere; memory past ``n`` is not touched."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        vty = context.get_value_type(vt)
        nn = context.cast(builder, args[2], sig.args[2], types.int64)
        mask = _lane_mask(builder, vt.lanes, ir.Constant(ir.IntType(64), 0), nn)
        fn = _masked_intrinsic(builder, "load", vty)
        align = ir.Constant(ir.IntType(32), vt.dtype.bitwidth // 8)
        return builder.call(fn, [builder.bitcast(p, vty.as_pointer()), align, mask, ir.Constant(vty, None)])

    return vt(arr, idx, n), codegen


@intrinsic
def vmask(typingctx, arr, n):
    """The mask of lanes ``0 <= k < n`` for vectors of ``arr``'s dtype."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        nn = context.cast(builder, args[1], sig.args[1], types.int64)
        # (1 << clamp(n, 0, lanes)) - 1, computed in 64 bits then truncated to one bit per lane
        nn = builder.select(builder.icmp_signed("<", nn, ir.Constant(i64, 0)), ir.Constant(i64, 0), nn)
        nn = builder.select(builder.icmp_signed(">", nn, ir.Constant(i64, vt.lanes)), ir.Constant(i64, vt.lanes), nn)
        bits = builder.sub(builder.shl(ir.Constant(i64, 1), nn), ir.Constant(i64, 1))
        return builder.trunc(bits, ir.IntType(vt.lanes))

    return Mask(vt.lanes)(arr, n), codegen


@intrinsic
def vload_m(typingctx, arr, idx, mask):
    """``arr[idx + k]`` in the lanes of ``mask``, zeros elsewhere; masked-off memory is not touched."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        vty = context.get_value_type(vt)
        fn = _masked_intrinsic(builder, "load", vty)
        align = ir.Constant(ir.IntType(32), vt.dtype.bitwidth // 8)
        bits = builder.bitcast(args[2], ir.VectorType(ir.IntType(1), vt.lanes))
        return builder.call(fn, [builder.bitcast(p, vty.as_pointer()), align, bits, ir.Constant(vty, None)])

    return vt(arr, idx, mask), codegen


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint that ``arr[idx]`` will be read soon (``llvm.prefetch``, into L1).  A prefetch is not a
    read: it never faults and its address may lie past the array (the data is then not used)."""

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        # integer address arithmetic: a GEP past the array would be undefined in LLVM's model
        addr = builder.add(builder.ptrtoint(ary.data, ir.IntType(64)),
                           builder.mul(i, ir.Constant(ir.IntType(64), sig.args[0].dtype.bitwidth // 8)))
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.inttoptr(addr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(arr, idx), codegen


@intrinsic
def vstore(typingctx, arr, idx, vec):
    """``arr[idx : idx + lanes] = vec``."""

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        vty = context.get_value_type(sig.args[2])
        builder.store(args[2], builder.bitcast(p, vty.as_pointer()), align=sig.args[2].dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(arr, idx, vec), codegen


@intrinsic
def vstore_lanes(typingctx, arr, idx, vec, lo, hi):
    """``arr[idx + k] = vec[k]`` for lanes ``lo <= k < hi`` only; other memory is not touched."""

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        vt = sig.args[2]
        vty = context.get_value_type(vt)
        lo_ = context.cast(builder, args[3], sig.args[3], types.int64)
        hi_ = context.cast(builder, args[4], sig.args[4], types.int64)
        mask = _lane_mask(builder, vt.lanes, lo_, hi_)
        fn = _masked_intrinsic(builder, "store", vty)
        align = ir.Constant(ir.IntType(32), vt.dtype.bitwidth // 8)
        builder.call(fn, [args[2], builder.bitcast(p, vty.as_pointer()), align, mask])
        return context.get_dummy_value()

    return types.none(arr, idx, vec, lo, hi), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane by lane, rounded once (one FMA instruction)."""

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(sig.args[0])
        fnty = ir.FunctionType(vty, [vty, vty, vty])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.{_vec_suffix(vty)}")
        return builder.call(fn, list(args))

    return a(a, b, c), codegen


@intrinsic
def vadd(typingctx, a, b):
    """``a + b`` lane by lane."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vrelu(typingctx, v):
    """``v < 0 ? 0 : v`` lane by lane: negative values become 0, NaN stays NaN (as PyTorch's relu)."""

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(sig.args[0])
        zero = ir.Constant(vty, None)
        neg = builder.fcmp_ordered("<", args[0], zero)
        return builder.select(neg, zero, args[0])

    return v(v), codegen


@intrinsic
def fetch_add(typingctx, arr, idx, value):
    """Atomically ``old = arr[idx]; arr[idx] += value; return old`` (an int64 work counter shared by threads).

    Sequentially consistent, so a worker's output stores are visible to whoever sees its "task done"
    count (on x86-64 this is the same ``lock xadd`` as a relaxed add).
    """

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        v = context.cast(builder, args[2], sig.args[2], sig.args[0].dtype)
        return builder.atomic_rmw("add", p, v, "seq_cst")

    return arr.dtype(arr, idx, value), codegen


@intrinsic
def veven(typingctx, a, b):
    """Lanes 0, 2, 4, ... of the concatenation ``a ++ b`` (one stride-2 deinterleave step)."""

    def codegen(context, builder, sig, args):
        n = sig.args[0].lanes
        idx = ir.Constant(ir.VectorType(ir.IntType(32), n), [2 * k for k in range(n)])
        return builder.shuffle_vector(args[0], args[1], idx)

    return a(a, b), codegen


@intrinsic
def vtranspose(typingctx, src, s0, ss, nr, nc, dst, d0, ds, idx, i0):
    """Transpose a ``lanes x lanes`` block in registers: ``dst[d0 + idx[i0 + j] * ds + i] = src[s0 + i * ss + j]``
    for ``i < nr`` and ``j < nc`` (nothing else is read or written; ``idx[i0 : i0 + lanes]`` must exist).

    Row ``i`` is one masked vector load, column ``j`` one masked vector store; in between, log2(lanes)
    stages of two-source shuffles, each swapping one bit of the row index with the same bit of the
    column index (about 0.3 cycles per element against 1.7 for a scalar element-by-element copy).
    """
    vt = _vec_of(src)
    n = vt.lanes

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        a_src, a_s0, a_ss, a_nr, a_nc, a_dst, a_d0, a_ds, a_idx, a_i0 = args
        t = sig.args

        def as64(v, ty):
            return context.cast(builder, v, ty, types.int64)

        s0_, ss_, nr_, nc_ = as64(a_s0, t[1]), as64(a_ss, t[2]), as64(a_nr, t[3]), as64(a_nc, t[4])
        d0_, ds_, i0_ = as64(a_d0, t[6]), as64(a_ds, t[7]), as64(a_i0, t[9])
        vty = context.get_value_type(vt)
        load = _masked_intrinsic(builder, "load", vty)
        store = _masked_intrinsic(builder, "store", vty)
        align = ir.Constant(i32, vt.dtype.bitwidth // 8)
        zero = ir.Constant(i64, 0)
        cols = _lane_mask(builder, n, zero, nc_)  # lanes j < nc of every row
        lanes_in = _lane_mask(builder, n, zero, nr_)  # lanes i < nr of every column
        src_ary = context.make_array(t[0])(context, builder, a_src)
        dst_ary = context.make_array(t[5])(context, builder, a_dst)
        idx_ary = context.make_array(t[8])(context, builder, a_idx)
        rows = []
        for i in range(n):
            ci = ir.Constant(i64, i)
            live = builder.icmp_signed("<", ci, nr_)
            m = builder.and_(cols, _splat(builder, live, n))
            p = builder.gep(src_ary.data, [builder.add(s0_, builder.mul(ci, ss_))])
            rows.append(builder.call(load, [builder.bitcast(p, vty.as_pointer()), align, m, ir.Constant(vty, None)]))
        b = n // 2
        while b >= 1:
            for i in range(n):
                if i & b:
                    continue
                lo, hi = rows[i], rows[i | b]
                m_lo = [l if not (l & b) else n + (l ^ b) for l in range(n)]
                m_hi = [(l ^ b) if not (l & b) else n + l for l in range(n)]
                rows[i] = builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, n), m_lo))
                rows[i | b] = builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, n), m_hi))
            b //= 2
        for j in range(n):
            cj = ir.Constant(i64, j)
            live = builder.icmp_signed("<", cj, nc_)
            m = builder.and_(lanes_in, _splat(builder, live, n))
            # idx[i0 + j] is read whatever j is (the caller pads idx), so no branch is needed
            k = builder.load(builder.gep(idx_ary.data, [builder.add(i0_, cj)]))
            k = context.cast(builder, k, t[8].dtype, types.int64)
            p = builder.gep(dst_ary.data, [builder.add(d0_, builder.mul(k, ds_))])
            builder.call(store, [rows[j], builder.bitcast(p, vty.as_pointer()), align, m])
        return context.get_dummy_value()

    return types.none(src, s0, ss, nr, nc, dst, d0, ds, idx, i0), codegen
