"""Whole networks on images larger than memory: exact tiled inference on dask (``fastpoint.dask.run``).

``run(net, x)`` takes a :class:`fastpoint.Network` (or anything :func:`fastpoint.load_onnx` takes) and a
dask array in the graph's input layout (N, C, H, W) chunked in N, H and W, and returns a lazy dask array
equal to ``net(x)`` computed in memory, image borders included. One task per output chunk runs the whole
network on its tile: the chunk plus the halo its outputs depend on. docs/dask.md explains why it is exact;
in short:

* **Reach.** For every value of the graph (per spatial axis) the analysis keeps ``step`` (input pixels per
  pixel of the value) and the interval ``[lo, hi]`` such that ``v[j]`` depends only on input pixels
  ``j * step + lo ... j * step + hi`` (Fractions: upsampling makes steps fractional). Conv, pooling,
  ConvTranspose, Pad and Resize/Upsample move the interval by their kernel, stride, dilation and pads;
  pointwise ops keep it; Add/Concat/... take the union over their inputs.
* **Alignment.** Tile starts are multiples of ``P``, the least common multiple of the steps' numerators,
  so every value's grid in the tile is the whole image's grid shifted by a whole number of its pixels
  (``A / step`` is an integer for every value), and strided windows, pooling cells and upsampling phases
  line up with the in-memory run.
* **Borders.** A tile never extends outside the image: at the image border it ends there, so each
  layer's own padding (zeros for Conv with a BatchNorm-folded bias, -inf for MaxPool, edge pixels for
  linear Resize, ceil_mode partial windows, count_include_pad divisors) happens exactly where the whole
  image has it. Inside the image a tile's edge is a cut with real neighbours; the values spoiled by the
  network's padding at a cut are those whose reach crosses it, and the halo keeps them out of the chunk.
* **One shape.** Every tile has ``T`` pixels per axis (a multiple of ``P``), except the last tile of an
  axis whose length is not ``T`` modulo ``P``; so a worker keeps one plan (one arena) in the common case.
* **Crops** (default). The halo is what the input needs; later steps need less. From the chunk backwards
  each step gets the window of its inputs its readers need; a graph with Slice nodes cutting those
  windows is planned once per tile shape and chunk position (:class:`CropPlan`, arena and in-place
  Concat included), and the plans of one tile shape share one arena per worker thread.

The same analysis runs on the whole image's plan and on every tile shape's plan; any difference (SAME
padding that depends on the size, a Resize with fixed sizes or a non-integer scale) is refused, as is
every op that mixes pixels across the image (global pooling, Flatten/Gemm heads, Softmax or Reduce over
spatial axes, Reshape, InstanceNormalization, ...): :class:`TilingError` names the node.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.threads import thread_limit
from .network import Network
from .plan import Plan

__all__ = ["TilingError", "Tiling", "TaskMemory", "run", "task_memory", "tiling"]


class TilingError(NotImplementedError):
    """The graph cannot be tiled exactly (raised by :func:`run` and :func:`tiling`, naming the node)."""


@dataclass(frozen=True)
class Reach:
    """Per spatial axis: ``v[j]`` depends on input pixels ``j * step + lo`` to ``j * step + hi``."""

    step: Fraction
    lo: Fraction
    hi: Fraction

    def union(self, other: Reach) -> Reach:
        return Reach(self.step, min(self.lo, other.lo), max(self.hi, other.hi))


Reach2 = Tuple[Reach, Reach]

# ops that compute each output pixel from the same pixel of their inputs (broadcasting constants)
POINTWISE = frozenset("""
Relu Clip LeakyRelu PRelu Sigmoid HardSigmoid HardSwish Tanh Elu Selu Celu ThresholdedRelu Softplus Softsign
Erf Gelu Swish Mish Abs Neg Exp Log Sqrt Reciprocal Floor Ceil Round Sign Sin Cos Tan Asin Acos Atan Sinh Cosh
Asinh Acosh Atanh Identity Dropout Cast CastLike BatchNormalization Not IsNaN IsInf Add Sub Mul Div Pow Mod Sum
Mean Max Min Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Where LRN
""".split())
# ops that mix pixels along ``axis``/``axes`` only (refused when those include the batch or a spatial axis)
AXIS_OPS = frozenset("""Softmax LogSoftmax Hardmax ArgMax ArgMin CumSum Concat Split Squeeze Unsqueeze
ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSum
ReduceLogSumExp""".split())
GLOBAL = frozenset("""GlobalAveragePool GlobalMaxPool GlobalLpPool Flatten Gemm MatMul Reshape Transpose
InstanceNormalization LayerNormalization GroupNormalization DepthToSpace SpaceToDepth Gather GatherElements
Slice Tile Expand""".split())


def _refuse(node, why: str) -> TilingError:
    return TilingError(f"fastpoint.dask.run cannot tile this graph: {node.op.op_type} node {node.name!r} {why}")


# --------------------------------------------------------------------------------------------------
# the analysis: the reach of every value of a plan


def _frac(v) -> Fraction:
    return Fraction(v).limit_denominator(1 << 20) if isinstance(v, float) else Fraction(v)


def _windowed(r: Reach, k: int, s: int, d: int, pb: int) -> Reach:
    """Conv / pooling along one axis: ``y[j]`` reads ``x[j*s - pb + t*d]``, ``t < k``."""
    e = d * (k - 1) + 1
    return Reach(r.step * s, r.lo - pb * r.step, r.hi + (e - 1 - pb) * r.step)


def _transposed(r: Reach, k: int, s: int, d: int, pb: int) -> Reach:
    """ConvTranspose along one axis: ``y[j]`` reads ``x[i]`` for ``(j + pb - (e-1)) / s <= i <= (j + pb) / s``."""
    e = d * (k - 1) + 1
    return Reach(r.step / s, r.lo + Fraction(pb - e + 1, s) * r.step, r.hi + Fraction(pb, s) * r.step)


def _pads(op, spatial: Sequence[int], kernel, strides, dilations) -> List[int]:
    """ONNX pads (begins then ends) of a Conv or pooling node for this input size."""
    from .ops_conv import auto_pads

    mode = op.attrs.get("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        return auto_pads(mode, spatial, kernel, strides, dilations)
    if mode == "VALID" or op.attrs.get("pads") is None:
        return [0] * (2 * len(kernel))
    return [int(p) for p in op.attrs["pads"]]


def _axes(node, rank: int, consts: Dict[str, np.ndarray]) -> Optional[List[int]]:
    """The axes an axis op works on (None: all of them)."""
    a = node.op.attrs
    t = node.op.op_type
    if t in ("Softmax", "LogSoftmax", "Hardmax"):
        if node.op.opset < 13:
            return list(range(int(a.get("axis", 1)) % rank, rank))  # coerced to 2-d from ``axis``: all axes after
        return [int(a.get("axis", -1)) % rank]
    if t in ("ArgMax", "ArgMin", "Concat", "Split"):
        return [int(a.get("axis", 0)) % rank]
    if t == "CumSum":
        return [int(np.asarray(consts[node.inputs[1]]).reshape(-1)[0]) % rank]
    axes = a.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = consts.get(node.inputs[1])
        if axes is None:
            raise _refuse(node, "has axes computed at run time")
    if axes is None or len(np.asarray(axes).reshape(-1)) == 0:
        if t.startswith("Reduce") and a.get("noop_with_empty_axes", 0):
            return []
        return None
    out_rank = rank + len(np.asarray(axes).reshape(-1)) if t == "Unsqueeze" else rank
    return [int(v) % out_rank for v in np.asarray(axes).reshape(-1)]


def _resize_reach(node, r2: Reach2, in_shape, consts) -> Reach2:
    op = node.op
    a = op.attrs
    if a.get("coordinate_transformation_mode") == "align_corners":
        raise _refuse(node, "uses align_corners (its sampling positions depend on the whole image size)")
    values = [consts.get(n) if n else None for n in node.inputs]
    try:
        axes, res = op._plan(tuple(in_shape), values)  # (input size, output size, scale) per resized axis
    except Exception as exc:  # noqa: BLE001 - anything the op cannot say is a refusal, never a guess
        raise _refuse(node, f"has scales the analysis cannot read ({exc})") from None
    rank = len(in_shape)
    out = list(r2)
    margin = 3 if a.get("mode") == "cubic" else 2
    for axis, (n_in, n_out, scale) in zip(axes, res):
        if axis < rank - 2:
            if n_in != n_out:
                raise _refuse(node, f"resizes axis {axis} (not a spatial axis)")
            continue
        u = _frac(scale)
        if u.denominator != 1 or u < 1 or n_out != n_in * u:
            raise _refuse(node, f"resizes {n_in} -> {n_out} pixels with scale {scale} (only integer upsampling "
                          "factors are shift-invariant)")
        r = r2[axis - (rank - 2)]
        out[axis - (rank - 2)] = Reach(r.step / u, r.lo - margin * r.step, r.hi + margin * r.step)
    return out[0], out[1]


def _pad_reach(node, r2: Reach2, rank: int, consts) -> Reach2:
    op = node.op
    mode = op.attrs.get("mode", "constant")
    if mode == "wrap":
        raise _refuse(node, "pads by wrapping (it reads the opposite side of the image)")
    pads = consts.get(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else op.attrs.get("pads")
    if pads is None:
        raise _refuse(node, "has pads computed at run time")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(rank))
    if len(node.inputs) > 3 and node.inputs[3]:
        axes = [int(v) % rank for v in np.asarray(consts[node.inputs[3]]).reshape(-1)]
    n = len(axes)
    out = list(r2)
    for i, axis in enumerate(axes):
        pb, pe = pads[i], pads[n + i]
        if axis < rank - 2:
            if axis == 0 and (pb or pe):
                raise _refuse(node, "pads the batch axis")
            continue
        if pb < 0 or pe < 0:
            raise _refuse(node, f"crops (negative pads {pads})")
        r = r2[axis - (rank - 2)]
        if mode == "constant":
            out[axis - (rank - 2)] = Reach(r.step, r.lo - pb * r.step, r.hi - pb * r.step)
        else:  # reflect / edge: a pixel near a border reads up to pb (or 2 pe) pixels further in
            out[axis - (rank - 2)] = Reach(r.step, r.lo - (pb + 2 * pe) * r.step, r.hi + pb * r.step)
    return out[0], out[1]


def _conv_reach(node, r2: Reach2, in_shape, in_shapes) -> Reach2:
    op = node.op
    w_shape = op.weight.shape if getattr(op, "weight", None) is not None else in_shapes[1]
    if w_shape is None or len(w_shape) != 4 or len(in_shape) != 4:
        raise _refuse(node, f"is not a 2-d convolution (input {in_shape}, weight {w_shape})")
    kernel = list(w_shape[2:])
    strides = list(op.attrs.get("strides") or [1, 1])
    dil = list(op.attrs.get("dilations") or [1, 1])
    if op.op_type == "Conv":
        pads = _pads(op, in_shape[2:], kernel, strides, dil)
        return tuple(_windowed(r2[i], kernel[i], strides[i], dil[i], pads[i]) for i in range(2))
    try:
        pads = op._geometry(tuple(in_shape), tuple(w_shape))[4]  # ConvTranspose: pads as the op computes them
    except Exception as exc:  # noqa: BLE001
        raise _refuse(node, f"has a geometry the analysis cannot read ({exc})") from None
    return tuple(_transposed(r2[i], kernel[i], strides[i], dil[i], pads[i]) for i in range(2))


def _pool_reach(node, r2: Reach2, in_shape) -> Reach2:
    a = node.op.attrs
    kernel = list(a["kernel_shape"])
    if len(node.outputs) > 1 and node.outputs[1]:
        raise _refuse(node, "returns indices (positions in the whole image)")
    if len(kernel) != 2 or len(in_shape) != 4:
        raise _refuse(node, f"is not a 2-d pooling (kernel {kernel})")
    strides = list(a.get("strides") or [1, 1])
    dil = list(a.get("dilations") or [1, 1])
    pads = _pads(node.op, in_shape[2:], kernel, strides, dil)
    return tuple(_windowed(r2[i], kernel[i], strides[i], dil[i], pads[i]) for i in range(2))


def _step_reach(step, reaches: Dict[str, Reach2], consts) -> Optional[Reach2]:
    """The reach of a plan step's outputs (None: the step does not depend on the image)."""
    node = step.node
    t = node.op.op_type
    ins = [(n, reaches.get(n), s) for n, s in zip(node.inputs, step.in_shapes) if n]
    live = [(n, r, s) for n, r, s in ins if r is not None]
    if not live:
        return None
    if any(s is None for s in step.out_shapes) or any(s is None for _, _, s in live):
        raise _refuse(node, "has a shape known only at run time")
    first = live[0][1]
    for n, r, _ in live[1:]:
        if (r[0].step, r[1].step) != (first[0].step, first[1].step):
            raise _refuse(node, f"combines values of different resolutions ({n!r})")
    for n, r, _ in ins:  # a constant operand that varies along a spatial axis ties pixels to positions
        if r is None and n in consts and (t in POINTWISE or t == "Concat") and consts[n].ndim >= 2 \
                and any(d > 1 for d in consts[n].shape[-2:]):
            raise _refuse(node, f"has a constant operand {n!r} of shape {consts[n].shape} that varies in space")
    rank = len(live[0][2])
    if rank < 3:
        raise _refuse(node, f"has a rank-{rank} input (no batch, channel and two spatial axes)")
    if t in GLOBAL:
        raise _refuse(node, "mixes pixels across the whole image")
    r2 = first
    for _, r, _ in live[1:]:
        r2 = (r2[0].union(r[0]), r2[1].union(r[1]))
    if t in POINTWISE:
        out = r2
    elif t in ("Conv", "ConvTranspose"):
        out = _conv_reach(node, r2, live[0][2], step.in_shapes)
    elif t in ("MaxPool", "AveragePool", "LpPool"):
        out = _pool_reach(node, r2, live[0][2])
    elif t in ("Resize", "Upsample"):
        out = _resize_reach(node, r2, live[0][2], consts)
    elif t == "Pad":
        out = _pad_reach(node, r2, rank, consts)
    elif t in AXIS_OPS:
        axes = _axes(node, rank, consts)
        out_rank = len(step.out_shapes[0])
        check_rank = out_rank if t == "Unsqueeze" else rank
        bad = {0, check_rank - 2, check_rank - 1}
        if axes is None or bad & set(axes):
            raise _refuse(node, f"works along axes {axes} of a rank-{check_rank} value (the batch or a spatial "
                          "axis)")
        out = r2
    else:
        raise _refuse(node, "is not known to be local in space")
    for s in step.out_shapes:
        if len(s) < 3:
            raise _refuse(node, f"gives a rank-{len(s)} output")
    return out


def analyse(net: Network, shape: Tuple[int, ...], dtype) -> Tuple[Dict[str, Reach2], Tuple[int, ...], object]:
    """The reach of every value for an input of this shape, the output shape, and the plan."""
    name = net.inputs[0].name
    plan = net.plan({name: (tuple(shape), np.dtype(dtype))})
    one = Fraction(1)
    reaches: Dict[str, Reach2] = {name: (Reach(one, Fraction(0), Fraction(0)),) * 2}
    for step in plan.steps:
        out = _step_reach(step, reaches, plan.consts)
        if out is not None:
            for o in step.node.outputs:
                if o:
                    reaches[o] = out
    oname = net.outputs[0].name
    if oname not in reaches:
        raise TilingError(f"fastpoint.dask.run: the output {oname!r} does not depend on the input image")
    return reaches, tuple(plan.shapes[oname]), plan


# --------------------------------------------------------------------------------------------------
# tiles


@dataclass(frozen=True)
class Tiling:
    """How :func:`run` cuts one image: per spatial axis, the output chunks and the input tile of each."""

    alignment: int  # tile starts are multiples of this (input pixels)
    reach: Tuple[Reach, Reach]  # of the network's output
    halo: Tuple[Tuple[int, int], Tuple[int, int]]  # input pixels before / after a chunk its outputs depend on
    out_shape: Tuple[int, ...]
    out_dtype: np.dtype
    out_chunks: Tuple[Tuple[int, ...], Tuple[int, ...]]  # output chunk sizes along H and W
    tiles: Tuple[Tuple[Tuple[int, int], ...], Tuple[Tuple[int, int], ...]]  # (start, end) input tile per chunk
    tile_shapes: Tuple[Tuple[int, ...], ...]  # every distinct tile shape (N chunk sizes included)
    peak_bytes: int  # the largest plan.peak_bytes over the tile shapes: activations of one task

    @property
    def overhead(self) -> float:
        """Arithmetic of all tiles over that of the whole image, minus 1 (the halo's recomputation)."""
        h = sum(e - s for s, e in self.tiles[0]) / max(1, self.tiles[0][-1][1])
        w = sum(e - s for s, e in self.tiles[1]) / max(1, self.tiles[1][-1][1])
        return h * w - 1.0


def _out_bounds(in_chunks: Sequence[int], out_len: int, step: Fraction) -> List[int]:
    bounds = [0]
    pos = 0
    for c in in_chunks[:-1]:
        pos += c
        b = min(out_len, math.ceil(pos / step))
        if b > bounds[-1]:
            bounds.append(b)
    if out_len > bounds[-1]:
        bounds.append(out_len)
    return bounds


def _axis_tiles(length: int, bounds: Sequence[int], r: Reach, p: int) -> List[Tuple[int, int]]:
    """Input tile ``[start, end)`` of each output chunk: starts multiples of ``p``, one length where possible."""
    need = []
    for o0, o1 in zip(bounds[:-1], bounds[1:]):
        s = max(0, math.floor(o0 * r.step + r.lo))
        e = min(length, math.ceil((o1 - 1) * r.step + r.hi) + 1)
        need.append((s, e))
    t = max(-(-(e - (s // p) * p) // p) * p for s, e in need)
    if t >= length:
        return [(0, length)] * len(need)
    last = ((length - t) // p) * p
    tiles = []
    for s, e in need:
        a = min((s // p) * p, last)
        tiles.append((a, a + t) if e <= a + t else (a, length))
    return tiles


def tiling(net, shape: Sequence[int], chunks: Sequence[Sequence[int]], dtype=np.float32) -> Tiling:
    """The tiles :func:`run` uses for an input of this shape and these chunks (no dask needed)."""
    net = _as_network(net)
    shape = tuple(int(s) for s in shape)
    reaches, out_shape, whole = analyse(net, shape, dtype)
    r2 = reaches[net.outputs[0].name]
    p = 1
    for rr in reaches.values():
        for r in rr:
            p = p * r.step.numerator // math.gcd(p, r.step.numerator)
    out_chunks, tiles = [], []
    for i, axis in enumerate((2, 3)):
        bounds = _out_bounds(chunks[axis], out_shape[-2 + i], r2[i].step)
        out_chunks.append(tuple(b - a for a, b in zip(bounds[:-1], bounds[1:])))
        tiles.append(tuple(_axis_tiles(shape[axis], bounds, r2[i], p)))
    shapes = sorted({(n, shape[1], e0 - s0, e1 - s1) for n in set(chunks[0])
                     for s0, e0 in tiles[0] for s1, e1 in tiles[1]})
    peak = 0
    for s in shapes:  # the analysis of every tile shape must be the whole image's (same grids, same scales)
        tile_reaches, _, plan = analyse(net, s, dtype)
        for name, rr in tile_reaches.items():
            if reaches.get(name) != rr:
                producer = next((st.node for st in plan.steps if name in st.node.outputs), None)
                where = f"{producer.op.op_type} node {producer.name!r}" if producer else f"value {name!r}"
                raise TilingError(f"fastpoint.dask.run cannot tile this graph: {where} behaves differently on a "
                                  f"{s[2]}x{s[3]} tile than on the {shape[2]}x{shape[3]} image (padding or scale "
                                  "that depends on the size)")
        peak = max(peak, int(plan.peak_bytes))
    halo = tuple((max(0, -math.floor(r.lo)), max(0, math.ceil(r.hi - (r.step - 1)))) for r in r2)
    out_dtype = np.dtype(whole.dtypes[net.outputs[0].name])
    return Tiling(p, r2, halo, out_shape, out_dtype, tuple(out_chunks), tuple(tiles), tuple(shapes), peak)


def _plan_flops(plan) -> int:
    return int(sum(st.node.op.flops(st.in_shapes, st.out_shapes) for st in plan.steps
                   if st.in_shapes and st.in_shapes[0] is not None and None not in st.out_shapes))


def _task_boxes(t: Tiling, shape: Sequence[int], chunks: Sequence[Sequence[int]], crop: bool):
    """Each tile task's (tile shape, output box): the box (inclusive, in the tile's output grid) with
    ``crop``, else None."""
    out_starts = [np.cumsum((0,) + c) for c in t.out_chunks]
    for n in chunks[0]:
        for bi, (a0, a1) in enumerate(t.tiles[0]):
            for bj, (b0, b1) in enumerate(t.tiles[1]):
                box = None
                if crop:
                    oh = int(out_starts[0][bi]) - int(a0 / t.reach[0].step)
                    ow = int(out_starts[1][bj]) - int(b0 / t.reach[1].step)
                    box = ((oh, oh + t.out_chunks[0][bi] - 1), (ow, ow + t.out_chunks[1][bj] - 1))
                yield (int(n), int(shape[1]), a1 - a0, b1 - b0), box


def tile_work(net, t: Tiling, shape: Sequence[int], chunks: Sequence[Sequence[int]], dtype=np.float32,
              crop: bool = False) -> float:
    """The arithmetic (the ops' flops) of all of ``t``'s tile tasks over the whole image's: ``1 +`` the
    recomputed share. Whole tiles: each tile's plan; ``crop``: each chunk's cropped graph (one per tile
    shape and chunk position, a few per image), or its tile's plan where the crops cannot pass the graph."""
    net = _as_network(net)
    name, oname = net.inputs[0].name, net.outputs[0].name
    whole = _plan_flops(net.plan({name: (tuple(int(v) for v in shape), np.dtype(dtype))}))
    cache: Dict[tuple, int] = {}
    total = 0
    for tshape, box in _task_boxes(t, shape, chunks, crop):
        key = (tshape, box)
        if key not in cache:
            plan = net.plan({name: (tshape, np.dtype(dtype))})
            crops = _Crops(plan, oname, box, t.alignment) if box is not None and plan.layout == "NCHW" else None
            cache[key] = crops.graph(plan)[2] if crops is not None and crops.ok else _plan_flops(plan)
        total += cache[key]
    return total / max(1, whole)


def task_arenas(net, t: Tiling, shape: Sequence[int], chunks: Sequence[Sequence[int]], dtype=np.float32,
                crop: bool = False) -> Dict[Tuple[int, ...], int]:
    """Per tile shape, the arena a worker thread holds for its tasks: with ``crop``, the largest cropped
    plan's of its chunk positions (they share one, :class:`_ThreadArenas`); else the tile plan's."""
    net = _as_network(net)
    name, oname = net.inputs[0].name, net.outputs[0].name
    out: Dict[Tuple[int, ...], int] = {}
    seen = set()
    for tshape, box in _task_boxes(t, shape, chunks, crop):
        if (tshape, box) in seen:
            continue
        seen.add((tshape, box))
        plan = net.plan({name: (tshape, np.dtype(dtype))})
        cp = crop_plan(plan, oname, box, t.alignment) if box is not None else None
        nbytes = cp.plan.arena_bytes if cp is not None else plan.arena_bytes  # (planned, not allocated)
        out[tshape] = max(out.get(tshape, 0), int(nbytes))
    return out


#: at most this many chunk positions are planned on the client for the arena reserve (a few ms each; a
#: uniform chunking has 9 per tile shape, ragged chunks up to the alignment squared)
MAX_RESERVE_PLANS = 64


def _arena_reserve(net, t: Tiling, shape, chunks, dtype, crop: bool) -> Optional[Dict[Tuple[int, ...], int]]:
    """:func:`task_arenas` for ``run`` to ship with the network (None: no crops, or too many positions to
    plan here; the workers' arenas then grow as the positions come)."""
    if not crop or len(set(_task_boxes(t, shape, chunks, True))) > MAX_RESERVE_PLANS:
        return None
    return task_arenas(net, t, shape, chunks, np.dtype(dtype), True)


@dataclass(frozen=True)
class TaskMemory:
    """Resident bytes one tile task adds to a worker: the plan's arena (exact, from the plan) plus
    ``fixed + per_pixel * tile pixels`` beside it (measured by :func:`task_memory`: the tile, kernel
    scratch, temporaries, the output, the allocator's slack, the weights packed at the first task)."""

    per_pixel: float
    fixed: float
    samples: Tuple[Tuple[int, int, int], ...] = ()  # (tile side, measured task bytes, arena bytes) per probe

    def bytes(self, net: Network, shape: Tuple[int, ...], dtype=np.float32, arena: Optional[int] = None) -> int:
        """A task's bytes on a tile of ``shape``; ``arena`` (:func:`task_arenas`: the cropped plans') or the
        tile plan's, which is at least as large on the networks measured (an upper bound for choosing)."""
        pixels = shape[0] * shape[2] * shape[3]
        if arena is None:
            arena = net.plan({net.inputs[0].name: (tuple(shape), np.dtype(dtype))}).arena_bytes
        return int(arena + self.fixed + self.per_pixel * pixels)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _probe_task(path: str) -> None:
    """In a fresh process (:func:`task_memory`): one worker's tile tasks on a tile of the given shape; prints
    the resident bytes they added (VmHWM after two tasks minus VmRSS before the first) and the arena."""
    import json
    import pickle

    with open(path, "rb") as f:
        graph, backend, shape, dtype, crop = pickle.load(f)
    shipped = _Shipped(graph, backend)
    net = shipped.network(tuple(shape))
    t = tiling(net, shape, ((shape[0],), (shape[1],), (shape[2],), (shape[3],)), dtype)
    box = (slice(0, t.out_shape[-2]), slice(0, t.out_shape[-1]))
    base = _status_bytes("VmRSS")

    def tasks() -> None:  # a tile as a worker reads it (every page written), run as a worker runs it
        for _ in range(2):
            x = np.full(shape, 0.5, dtype=dtype)
            y = _tile_task(shipped, x, 0.0, box, 1, t.alignment, crop)
            del x, y

    worker = threading.Thread(target=tasks)  # in a thread of its own, as a dask worker's task (its own
    worker.start()  # malloc arena, its stack)
    worker.join()
    arena = net.plan({net.inputs[0].name: (tuple(shape), np.dtype(dtype))}).arena_bytes
    if shipped._arenas is not None and shipped._arenas.nbytes:
        arena = shipped._arenas.nbytes  # the cropped plans' shared arena
    print(json.dumps({"task_bytes": _status_bytes("VmHWM") - base, "arena_bytes": int(arena)}))


def task_memory(net, dtype=np.float32, channels: Optional[int] = None, sizes: Tuple[int, int] = (384, 768),
                crop: bool = False) -> TaskMemory:
    """Measure the resident memory a tile task adds to a worker, on two small tiles, each in a fresh process.

    Each probe process loads the network as a worker gets it, reads its resident memory, runs two tile
    tasks of ``size x size`` (the tile filled, as a read fills it; the plan, its arena faulted in, the
    weights packed) and reads its high-water mark (VmHWM): the difference is what the tasks added, seen
    by the kernel, so C allocations, thread stacks and the allocator's slack count (tracemalloc sees only
    Python's). Less the plan's arena (exact, known for any shape), the rest is fitted as ``fixed +
    per_pixel * pixels``. ``crop``: the tasks run cropped plans (whole-tile demand, an upper bound)."""
    import json
    import subprocess
    import sys
    import tempfile

    import cloudpickle

    net = _as_network(net)
    info = net.inputs[0]
    c = channels or (info.shape[1] if info.shape and isinstance(info.shape[1], int) else 3)
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in sizes:
            path = f"{tmp}/probe-{s}.pkl"
            with open(path, "wb") as f:  # (cloudpickle, as dask ships it: some op classes are made at run time)
                cloudpickle.dump((net._graph, net.backend, (1, c, s, s), np.dtype(dtype).str, crop), f)
            out = subprocess.run([sys.executable, "-c", "import sys; from fastpoint.network.tiled import "
                                  "_probe_task; _probe_task(sys.argv[1])", path],
                                 capture_output=True, text=True, check=False, env=_probe_env())
            if out.returncode != 0:
                raise RuntimeError(f"fastpoint: the task-memory probe on a {s}x{s} tile failed:\n{out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            samples.append((s, int(r["task_bytes"]), int(r["arena_bytes"])))
    (s1, t1, a1), (s2, t2, a2) = samples[0], samples[-1]
    e1, e2 = t1 - a1, t2 - a2
    per_pixel = max(0.0, (e2 - e1) / max(1, s2 * s2 - s1 * s1))
    return TaskMemory(per_pixel, max(0.0, e1 - per_pixel * s1 * s1), tuple(samples))


def _probe_env() -> Dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # as a dask nanny sets it for its workers
    return env


# --------------------------------------------------------------------------------------------------
# demand-driven crops: each step computes only what the output chunk needs of it

# ops a cropped run may pass through: each output pixel at a fixed offset/scale of its inputs' pixels
_CROP_WINDOWED = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
_CROP_OK = POINTWISE | AXIS_OPS | _CROP_WINDOWED | {"ConvTranspose", "Resize", "Upsample"}


def _step_geometry(step, consts) -> Optional[list]:
    """Per spatial axis how the step maps its input grid to its output grid: ``("win", k, s, d, pb)``,
    ``("tr", k, s, d, pb)``, ``("up", u, margin)`` or ``("id",)``; None: a cropped run cannot pass it."""
    node = step.node
    op, t = node.op, node.op.op_type
    if t not in _CROP_OK or op.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None  # SAME padding depends on the (cropped) input size
    shape = step.in_shapes[0]
    if t in _CROP_WINDOWED or t == "ConvTranspose":
        if t in _CROP_WINDOWED and t != "Conv":
            kernel = list(op.attrs["kernel_shape"])
        else:
            kernel = list(op.weight.shape[2:] if getattr(op, "weight", None) is not None else step.in_shapes[1][2:])
        strides = list(op.attrs.get("strides") or [1, 1])
        dil = list(op.attrs.get("dilations") or [1, 1])
        if t == "ConvTranspose":
            if op.attrs.get("output_shape") is not None:
                return None
            pads = op._geometry(tuple(shape), tuple(op.weight.shape if getattr(op, "weight", None) is not None
                                                    else step.in_shapes[1]))[4]
            return [("tr", kernel[i], strides[i], dil[i], pads[i]) for i in range(2)]
        pads = _pads(op, shape[2:], kernel, strides, dil)
        return [("win", kernel[i], strides[i], dil[i], pads[i]) for i in range(2)]
    if t in ("Resize", "Upsample"):
        values = [consts.get(n) if n else None for n in node.inputs]
        axes, res = op._plan(tuple(shape), values)
        up = {a: int(_frac(sc)) for a, (_, _, sc) in zip(axes, res)}
        margin = 3 if op.attrs.get("mode") == "cubic" else 2
        return [("up", up.get(len(shape) - 2 + i, 1), margin) for i in range(2)]
    return [("id",), ("id",)]


def _demand_in(g, lo: int, hi: int) -> Tuple[int, int]:
    """The input pixels (inclusive, in the input's grid) that outputs ``lo..hi`` read."""
    if g[0] == "win":
        _, k, s, d, pb = g
        return lo * s - pb, hi * s - pb + d * (k - 1)
    if g[0] == "tr":
        _, k, s, d, pb = g
        return -((-(lo + pb - d * (k - 1))) // s), (hi + pb) // s
    if g[0] == "up":
        _, u, m = g
        return lo // u - m, hi // u + m
    return lo, hi


def _start_out(g, start: int) -> Optional[int]:
    """Where the output array starts (in its grid) when the input array starts at ``start``."""
    if g[0] == "win":
        return start // g[2] if start % g[2] == 0 else None
    if g[0] == "tr":
        return start * g[2]
    if g[0] == "up":
        return start * g[1]
    return start


class _Crops:
    """For one tile plan and one output chunk: the window of its inputs each step needs, from the chunk
    backwards (the union over a value's readers), and the grid alignment of every value (``P / step``:
    a window starts on it, so strided windows and pooling cells stay the whole image's)."""

    MIN_SAVING = 0.98  # cut a step's inputs only when the window is at most this share of their common extent

    def __init__(self, plan, out_name: str, out_box, p: int) -> None:
        self.ok = all(not any(st.nhwc) and not st.to_nchw for st in plan.steps)
        self.geom = {}
        self.windows = {}
        self.align: Dict[str, Tuple[int, int]] = {}
        # the image-derived values and their steps (input pixels per pixel), forward
        steps: Dict[str, Tuple[Fraction, Fraction]] = {plan.graph.inputs[0].name: (Fraction(1), Fraction(1))}
        for st in plan.steps if self.ok else ():
            ins = [n for n in st.node.inputs if n and n in steps]
            if not ins:
                continue
            g = _step_geometry(st, plan.consts)
            if g is None or any(len(plan.shapes[n]) != 4 for n in ins) or \
                    any(len(plan.shapes[o]) != 4 for o in st.node.outputs if o):
                self.ok = False
                break
            self.geom[id(st)] = g
            sv = steps[ins[0]]
            for n in ins:
                a = [p * sv[i].denominator // sv[i].numerator if (p * sv[i].denominator) % sv[i].numerator == 0
                     else 0 for i in range(2)]
                if 0 in a:
                    self.ok = False
                self.align[n] = (a[0], a[1])
            so = tuple(sv[i] * g[i][2] if g[i][0] == "win" else sv[i] / g[i][2] if g[i][0] == "tr"
                       else sv[i] / g[i][1] if g[i][0] == "up" else sv[i] for i in range(2))
            for o in st.node.outputs:
                if o:
                    steps[o] = so
        if not self.ok:
            return
        demand: Dict[str, List[Tuple[int, int]]] = {out_name: [tuple(b) for b in out_box]}
        for st in reversed(plan.steps):
            g = self.geom.get(id(st))
            if g is None:
                continue
            outs = [demand[o] for o in st.node.outputs if o in demand]
            if not outs:
                continue
            box = [(min(d[i][0] for d in outs), max(d[i][1] for d in outs)) for i in range(2)]
            need = [_demand_in(g[i], *box[i]) for i in range(2)]
            self.windows[id(st)] = need
            for n in st.node.inputs:
                if n and n in self.align:
                    old = demand.get(n)
                    demand[n] = need if old is None else [(min(old[i][0], need[i][0]), max(old[i][1], need[i][1]))
                                                          for i in range(2)]

    def graph(self, plan, min_saving: Optional[float] = None):
        """The tile plan's steps as a graph whose image inputs are cut by Slice nodes to the windows the
        chunk needs, where the output starts (in its grid), and the graph's arithmetic (the ops' ``flops``
        on the cut shapes): ``(Graph, (start_h, start_w), flops)``.

        Walks the steps forwards with each value's start and shape (the ops' own shape inference on the
        cut shapes). A step's inputs are cut to its window (start rounded down to the value's alignment,
        clipped to where the arrays are; all its image inputs to the same window, as Concat and Add need
        equal extents) when the window is at most ``min_saving`` of their common extent: a cut is a copy
        (into the arena: the planner places the Slice's output like any other), so it is made where the
        work it saves downstream outweighs it. Planning this graph gives the arena, the in-place Concat
        (a cut skip connection is written straight into the Concat's buffer) and the prebound kernels."""
        from .graph import Graph, Node
        from .ops_shape import Slice

        keep = self.MIN_SAVING if min_saving is None else min_saving
        name0 = plan.graph.inputs[0].name
        shapes: Dict[str, Tuple[int, ...]] = {name0: tuple(plan.shapes[name0])}
        start: Dict[str, Tuple[int, int]] = {name0: (0, 0)}
        inits: Dict[str, np.ndarray] = dict(plan.consts)
        nodes: List = []
        axes = np.array([2, 3], np.int64)
        flops = 0
        for st in plan.steps:
            node = st.node
            ins = list(node.inputs)
            g = self.geom.get(id(st))
            win = self.windows.get(id(st))
            spatial = [j for j, n in enumerate(ins) if n in start]
            so = None
            if g is not None and spatial:
                first = ins[spatial[0]]
                lo, hi, full = [], [], []
                for i in range(2):
                    a0 = max(start[ins[j]][i] for j in spatial)
                    a1 = min(start[ins[j]][i] + shapes[ins[j]][2 + i] for j in spatial)
                    if win is None:
                        w0, w1 = a0, a1
                    else:
                        m = self.align[first][i]
                        w0, w1 = max(a0, (win[i][0] // m) * m), min(a1, win[i][1] + 1)
                    lo.append(w0)
                    hi.append(w1)
                    full.append((a0, a1))
                if (hi[0] - lo[0]) * (hi[1] - lo[1]) > keep * (full[0][1] - full[0][0]) * (full[1][1] - full[1][0]):
                    lo, hi = [f[0] for f in full], [f[1] for f in full]
                for j in spatial:
                    n, s0, sh = ins[j], start[ins[j]], shapes[ins[j]]
                    b = [lo[i] - s0[i] for i in range(2)]
                    e = [hi[i] - s0[i] for i in range(2)]
                    if b == [0, 0] and e == [sh[2], sh[3]]:
                        continue
                    cut = f"{n}__crop{len(nodes)}"
                    names = [f"{cut}_{k}" for k in ("starts", "ends", "axes")]
                    inits[names[0]], inits[names[1]], inits[names[2]] = np.array(b, np.int64), \
                        np.array(e, np.int64), axes
                    nodes.append(Node(Slice("Slice", cut, {}, 13, 4, 1), [n] + names, [cut]))
                    shapes[cut], start[cut] = sh[:2] + (e[0] - b[0], e[1] - b[1]), (lo[0], lo[1])
                    ins[j] = cut
                so = tuple(_start_out(g[i], lo[i]) for i in range(2))
                if None in so:
                    raise RuntimeError(f"fastpoint.dask.run: node {node.name!r} gets a window off its grid")
            nodes.append(Node(node.op, ins, list(node.outputs)))
            in_shapes = [shapes.get(n, plan.shapes.get(n)) if n else None for n in ins]
            in_dtypes = [plan.dtypes.get(n) if n else None for n in node.inputs]
            values = [plan.consts.get(n) if n else None for n in ins]
            res = node.op.infer(in_shapes, in_dtypes, values)
            if res is None or any(r is None or r[0] is None for r in res):
                raise RuntimeError(f"fastpoint.dask.run: node {node.name!r} has no shape on a cropped tile")
            flops += node.op.flops(in_shapes, [tuple(r[0]) for r in res])
            for o, r in zip(node.outputs, res):
                if o:
                    shapes[o] = tuple(r[0])
                    if so is not None:
                        start[o] = so
        g0 = plan.graph
        return (Graph(nodes, inits, list(g0.inputs), list(g0.outputs), g0.opset), start.get(g0.outputs[0].name, (0, 0)),
                int(flops))


class _ThreadArenas:
    """One arena per thread, shared by the cropped plans of one tile shape: a thread runs one plan at a
    time and a plan's results are copied out of its arena, so the plans of a worker thread can take turns
    on the same bytes: memory of one arena, faulted in once per size, whatever the number of chunk classes.

    The arena is as large as the largest cropped plan of the tile shape (``reserve``: :func:`run` computes it
    over the chunk positions, :func:`task_arenas`), or of those that ran when that is larger or not given;
    not the whole tile plan's (BasicUNet, 1248^2 tile: 479 MiB for an interior chunk against the tile plan's
    570; 443 against 473 at a 2048^2 corner). A plan that needs more grows it: the thread's old buffer is
    dropped, and so are the other cropped plans (``on_grow``, which binds them to the larger one when they
    next run: a plan costs a few ms, the new arena's pages once; :meth:`CropPlan.release` frees the old
    buffer's views at once)."""

    def __init__(self, on_grow=None, reserve: int = 0) -> None:
        self.nbytes = int(reserve)  # the largest any thread's plan asked for, or the reserve if larger
        # a weak reference to the owner's method: the owner holds this, a strong one would make a cycle that
        # only the cycle collector frees (and the arena with it)
        self.on_grow = None if on_grow is None else weakref.WeakMethod(on_grow)
        self._local = threading.local()

    def get(self, nbytes: int, plan=None) -> np.ndarray:
        from .pages import fresh_bytes

        buf = getattr(self._local, "buf", None)
        if buf is not None and buf.nbytes >= nbytes:
            return buf
        if buf is not None:
            self._local.buf = buf = None
            on_grow = self.on_grow() if self.on_grow is not None else None
            if on_grow is not None:
                on_grow(plan)  # the plans bound to the smaller buffer let go of it (CropPlan.release: now)
        self.nbytes = max(self.nbytes, int(nbytes))
        buf = self._local.buf = fresh_bytes(self.nbytes, populate=True)
        return buf


class _SharedPlan(Plan):
    """A Plan whose threads' arenas come from a :class:`_ThreadArenas`, freed by reference counting.

    A plain Plan and its per-thread programs refer to each other (the program's general entries are bound
    to the plan's ``_run_step``), so a dropped plan waits for the cycle collector with its views of the
    arena: in a dask worker, whose long-lived objects are collected rarely, that is a second arena (0.9 GiB
    for BasicUNet's 2272 x 1248 tiles) beside the one that replaced it. Here the entries reach the plan
    through a weak proxy, so nothing in a plan refers back to it: dropped, it goes at once, its programs and
    views with it (while a thread runs it, that call's frame holds it). One class, the arenas an attribute: a
    class made per plan would hold them in its closure, and a class is freed only by the cycle collector."""

    def __init__(self, graph, feeds, arenas: _ThreadArenas) -> None:
        self.shared_arenas = arenas
        super().__init__(graph, feeds, "NCHW")

    @property
    def _run_step(self):
        return partial(Plan._run_step, weakref.proxy(self))

    def _new_arena(self, nbytes: int) -> np.ndarray:
        return self.shared_arenas.get(nbytes, self)

    def _output_buffers(self, step):
        # a fresh array for each output, kept by no pool: a task's output goes to dask, which frees it
        # (a Plan's per-thread pool would keep one output per cropped plan alive: 9 plans x 8 MiB for
        # BasicUNet's 1024^2 logits, measured as 35 MiB more per worker at 4096^2)
        return [np.empty(shape, dtype) for shape, dtype in zip(step.out_shapes, step.out_dtypes)]


def _shared_plan(graph, feeds, arenas: Optional[_ThreadArenas]):
    """A Plan whose threads' arenas come from ``arenas`` (a plain Plan without)."""
    return Plan(graph, feeds, "NCHW") if arenas is None else _SharedPlan(graph, feeds, arenas)


class CropPlan:
    """A planned cropped run of one tile shape for one output chunk position: the plan of
    :meth:`_Crops.graph` (made on first use, its arenas from ``arenas`` when given; :meth:`release` drops
    it, the next call plans again) and where its output starts in the tile's output grid."""

    def __init__(self, plan, crops: _Crops, min_saving: Optional[float] = None,
                 arenas: Optional[_ThreadArenas] = None) -> None:
        self.graph, self.start, self.flops = crops.graph(plan, min_saving)
        self.input, self.output = plan.graph.inputs[0].name, plan.graph.outputs[0].name
        self.feeds = {self.input: (tuple(plan.shapes[self.input]), plan.dtypes[self.input])}
        self.arenas = arenas
        self._plan = None
        self._lock = threading.Lock()

    @property
    def plan(self):
        with self._lock:
            if self._plan is None:
                self._plan = _shared_plan(self.graph, self.feeds, self.arenas)
            return self._plan

    def release(self) -> None:
        """Drop the plan, and with it its threads' views of the shared arena (freed now, by reference
        counting: :class:`_SharedPlan` is in no cycle; a thread running it keeps it until its call
        returns); the next call plans again."""
        with self._lock:
            self._plan = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.plan.run({self.input: x})[self.output]


def crop_plan(plan, out_name: str, box, p: int, min_saving: Optional[float] = None,
              arenas: Optional[_ThreadArenas] = None) -> Optional[CropPlan]:
    """The cropped plan of the tile ``plan`` for the output chunk ``box`` (inclusive, in the tile's output
    grid), or None where the crops cannot pass the graph (an NHWC plan, a Pad, SAME padding, ...)."""
    if getattr(plan, "layout", "NCHW") != "NCHW":
        return None
    crops = _Crops(plan, out_name, box, p)
    return CropPlan(plan, crops, min_saving, arenas) if crops.ok else None


# --------------------------------------------------------------------------------------------------
# the network on the workers


class _Shipped:
    """The network as one graph key: pickled once per worker; each worker keeps the Network of the last
    tile shape it ran (one plan, one arena: memory bounded by one tile), and the prepacked weights (in the
    graph's nodes) are shared by those Networks. With crops, it keeps the cropped plans of that tile shape
    (one per chunk position: interior, edges, corners), which share one arena per worker thread, the size
    of the largest of them that ran (:class:`_ThreadArenas`)."""

    MAX_SHAPES = 1
    MAX_CROP_PLANS = 16

    def __init__(self, graph, backend: str, arena_reserve: Optional[Dict[Tuple[int, ...], int]] = None) -> None:
        self.graph, self.backend = graph, backend
        # per tile shape, the largest cropped plan's arena over the chunk positions (:func:`task_arenas`): the
        # shared arena is made that large at once, so it is faulted in once per worker thread instead of
        # again at each growth (0.16 s of thread CPU per 450 MiB populated on the 2-vCPU Zen 5 VM: a fifth of
        # a BasicUNet task on a 1136^2 tile, whose second task went 1.13-1.23 -> 0.93-0.96 s with it)
        self.arena_reserve = dict(arena_reserve or {})
        self._nets: Dict[Tuple[int, ...], Network] = {}
        self._crops: Dict[tuple, Optional[CropPlan]] = {}
        self._arenas: Optional[_ThreadArenas] = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"graph": self.graph, "backend": self.backend, "arena_reserve": self.arena_reserve}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["graph"], state["backend"], state.get("arena_reserve"))

    def network(self, shape: Tuple[int, ...]) -> Network:
        import gc

        with self._lock:
            net = self._nets.get(shape)
            if net is None:
                if self._nets or self._crops:
                    self._nets.clear()  # their plans and arenas go with them
                    self._crops.clear()
                    self._arenas = None
                    gc.collect()  # a plan and its per-thread program refer to each other: free the arenas now
                net = self._nets[shape] = Network(self.graph, self.backend)
            return net

    def crop_plan(self, net: Network, x: np.ndarray, box, p: int) -> Optional[CropPlan]:
        """The cropped plan of this tile shape for the output chunk ``box`` (cached per tile shape and box;
        None: the graph runs whole tiles)."""
        key = (x.shape, x.dtype.str, box, p)
        with self._lock:
            if key not in self._crops:
                plan = net.plan({net.inputs[0].name: (x.shape, x.dtype)})
                if self._arenas is None:
                    self._arenas = _ThreadArenas(self._release_others, self.arena_reserve.get(tuple(x.shape), 0))
                if len(self._crops) >= self.MAX_CROP_PLANS:
                    self._crops.pop(next(iter(self._crops)))
                self._crops[key] = crop_plan(plan, net.outputs[0].name, box, p, arenas=self._arenas)
            return self._crops[key]


    def _release_others(self, keep) -> None:
        """The cropped plans other than the one whose plan is ``keep`` let go of their arenas
        (:class:`_ThreadArenas` grows); each plans again at its next call."""
        with self._lock:
            crops = [cp for cp in self._crops.values() if cp is not None]
        for cp in crops:
            if cp._plan is not keep:
                cp.release()


# per process (a dask worker): what the tile tasks spent where, for ``fastpoint segment``'s report
_TASK_STATS = {"tasks": 0, "cut_s": 0.0, "setup_s": 0.0, "network_s": 0.0, "network_cpu_s": 0.0, "tile_pixels": 0}
_STATS_LOCK = threading.Lock()


def task_stats(reset: bool = False) -> dict:
    """This process's tile-task totals (seconds cutting tiles, making plans, in the network; tile pixels)."""
    with _STATS_LOCK:
        out = dict(_TASK_STATS)
        if reset:
            _TASK_STATS.update({k: type(v)() for k, v in _TASK_STATS.items()})
    return out


def _cut(blocks, offsets: Tuple[int, int, int, int]) -> np.ndarray:
    """The tile from the input blocks it overlaps, copied once into one C-contiguous array."""
    h0, h1, w0, w1 = offsets
    first = blocks[0][0]
    x = np.empty(first.shape[:2] + (h1 - h0, w1 - w0), dtype=first.dtype)
    r = 0
    for row in blocks:
        rh = row[0].shape[2]
        a, b = max(h0, r), min(h1, r + rh)
        c = 0
        for blk in row:
            cw = blk.shape[3]
            e, f = max(w0, c), min(w1, c + cw)
            if a < b and e < f:
                x[:, :, a - h0:b - h0, e - w0:f - w0] = blk[:, :, a - r:b - r, e - c:f - c]
            c += cw
        r += rh
    return x


def _run_tile(shipped: _Shipped, blocks, offsets: Tuple[int, int, int, int], out_slices: Tuple[slice, slice],
              num_threads: int, alignment: int = 1, crop: bool = False) -> np.ndarray:
    """One task: the whole network on the tile cut from the input ``blocks``; the output chunk's pixels."""
    t0 = time.perf_counter()
    x = _cut(blocks, offsets)
    return _tile_task(shipped, x, time.perf_counter() - t0, out_slices, num_threads, alignment, crop)


def _read_tile(shipped: _Shipped, source, n: Tuple[int, int], offsets: Tuple[int, int, int, int],
               out_slices: Tuple[slice, slice], num_threads: int, alignment: int = 1, crop: bool = False
               ) -> np.ndarray:
    """One task on an array-like ``source`` (a zarr array, a memory map): reads its tile, halo included,
    straight from it, so a worker holds no input block beyond the tiles it is running."""
    t0 = time.perf_counter()
    h0, h1, w0, w1 = offsets
    x = np.ascontiguousarray(source[n[0]:n[1], :, h0:h1, w0:w1])
    return _tile_task(shipped, x, time.perf_counter() - t0, out_slices, num_threads, alignment, crop)


def _tile_task(shipped: _Shipped, x: np.ndarray, cut_s: float, out_slices: Tuple[slice, slice], num_threads: int,
               alignment: int, crop: bool) -> np.ndarray:
    """The network on the tile ``x`` (cropped per step when ``crop``: :class:`CropPlan`); the chunk's pixels."""
    t1 = time.perf_counter()
    net = shipped.network(x.shape)
    cp = None
    if crop:
        box = tuple((sl.start, sl.stop - 1) for sl in out_slices)
        cp = shipped.crop_plan(net, x, box, alignment)
    t2 = time.perf_counter()
    c0 = time.thread_time()
    with thread_limit(num_threads):
        if cp is not None:
            y = cp(x)
            s0, s1 = cp.start
            out_slices = (slice(out_slices[0].start - s0, out_slices[0].stop - s0),
                          slice(out_slices[1].start - s1, out_slices[1].stop - s1))
        else:
            y = net(x)
    c1, t3 = time.thread_time(), time.perf_counter()
    with _STATS_LOCK:
        st = _TASK_STATS
        st["tasks"] += 1
        st["cut_s"] += cut_s
        st["setup_s"] += t2 - t1
        st["network_s"] += t3 - t2
        st["network_cpu_s"] += c1 - c0
        st["tile_pixels"] += int(x.shape[0] * x.shape[2] * x.shape[3])
    sh, sw = out_slices
    if sh.start < 0 or sw.start < 0 or sh.stop > y.shape[-2] or sw.stop > y.shape[-1]:
        raise RuntimeError(f"fastpoint.dask.run: a {x.shape} tile gave a {y.shape} output, too small for "
                           f"{out_slices}: the tiling analysis is wrong for this graph")
    if y.shape[-2:] == (sh.stop - sh.start, sw.stop - sw.start):
        return y  # (a cropped plan's output is the chunk already: no copy)
    return np.ascontiguousarray(y[..., sh, sw])


def _as_network(net) -> Network:
    if isinstance(net, Network):
        return net
    from . import load_onnx

    return load_onnx(net)


def _source_chunks(x, chunks) -> Tuple[Tuple[int, ...], ...]:
    """The chunks of an array-like source: ``chunks`` an int (square H, W chunks) or an (H, W) pair, one
    image per N chunk, all channels in one."""
    if chunks is None:
        raise ValueError(f"chunks is required when x is not a dask array (got a {type(x).__name__} of shape "
                         f"{tuple(x.shape)}): the output chunk size in pixels, an int or an (H, W) pair")
    ch, cw = (chunks, chunks) if isinstance(chunks, (int, np.integer)) else tuple(chunks)
    if int(ch) < 1 or int(cw) < 1:
        raise ValueError(f"chunks must be positive, got {chunks}")
    n, c, h, w = (int(v) for v in x.shape)
    return ((1,) * n, (c,), tuple(min(int(ch), h - i) for i in range(0, h, int(ch))),
            tuple(min(int(cw), w - i) for i in range(0, w, int(cw))))


def run(net, x, *, num_threads: Optional[int] = None, crop: bool = True, chunks=None):
    """``net(x)`` on ``x`` (N, C, H, W): a lazy dask array, exact, chunked like ``x`` in N, H and W.

    ``x`` is a dask array chunked in N, H and W, or an array-like with ``shape``, ``dtype`` and NumPy
    slicing (a zarr array, a memory map, :class:`fastpoint.network.segment.ImageSource`) with ``chunks``
    the output chunk size (an int, or an (H, W) pair): then each task reads its tile, halo included,
    straight from ``x``, and a worker holds no input blocks for its neighbours' tasks (its memory does not
    grow with the image's width).

    One task per output chunk runs the whole network on the chunk plus its halo (see the module doc and
    docs/dask.md); ``num_threads`` kernel threads per task (default 1: dask runs one task per core).
    ``crop`` (default): every step computes only the pixels of it the chunk needs (a late layer needs a
    few pixels more than the chunk, not the whole tile), through a plan per tile shape and chunk position
    whose Slice steps cut the inputs (:class:`CropPlan`); exact; graphs the crops cannot pass run whole
    tiles, as ``crop=False`` does.
    """
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    net = _as_network(net)
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise TypeError(f"fastpoint.dask.run needs a network with one input and one output (this one has "
                        f"{len(net.inputs)} and {len(net.outputs)})")
    is_dask = isinstance(x, da.Array)
    if not is_dask and not all(hasattr(x, a) for a in ("shape", "dtype", "__getitem__")):
        raise TypeError(f"x must be a dask array or an array-like (shape, dtype, slicing), got {type(x).__name__}")
    if len(x.shape) != 4:
        raise ValueError(f"x must be 4-d (N, C, H, W) in the graph's input layout, got shape {tuple(x.shape)}")
    threads = 1 if num_threads is None else int(num_threads)
    if threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    if is_dask:
        x = x.rechunk({1: -1})
        in_chunks = x.chunks
    else:
        in_chunks = _source_chunks(x, chunks)
    t = tiling(net, tuple(x.shape), in_chunks, np.dtype(x.dtype))
    shipped = _Shipped(net._graph, net.backend, _arena_reserve(net, t, tuple(x.shape), in_chunks, x.dtype, crop))
    net_key = "fastpoint-network-" + uuid.uuid4().hex  # one key per call: the network is shipped once per worker
    shipped_d = dask.delayed(shipped, name=net_key, pure=True, traverse=False)
    deps = [shipped_d]
    if is_dask:
        name = "fastpoint-run-" + tokenize(x, net_key, threads, crop)
        deps.append(x)
    else:
        src_key = "fastpoint-source-" + tokenize(id(x), uuid.uuid4().hex)
        deps.append(dask.delayed(x, name=src_key, pure=True, traverse=False))
        name = "fastpoint-run-" + tokenize(src_key, net_key, threads, crop)
    starts = [np.cumsum((0,) + in_chunks[a]) for a in (2, 3)]
    n_starts = np.cumsum((0,) + in_chunks[0])
    out_starts = [np.cumsum((0,) + c) for c in t.out_chunks]
    rank = len(t.out_shape)
    layer = {}
    for bn in range(len(in_chunks[0])):
        for bi, (a0, a1) in enumerate(t.tiles[0]):
            i0 = int(np.searchsorted(starts[0], a0, side="right") - 1)
            i1 = int(np.searchsorted(starts[0], a1, side="left"))
            for bj, (b0, b1) in enumerate(t.tiles[1]):
                oh = int(out_starts[0][bi]) - int(a0 / t.reach[0].step)
                ow = int(out_starts[1][bj]) - int(b0 / t.reach[1].step)
                sl = (slice(oh, oh + t.out_chunks[0][bi]), slice(ow, ow + t.out_chunks[1][bj]))
                key = (name, bn) + (0,) * (rank - 3) + (bi, bj)
                if not is_dask:
                    layer[key] = (_read_tile, net_key, src_key, (int(n_starts[bn]), int(n_starts[bn + 1])),
                                  (a0, a1, b0, b1), sl, threads, t.alignment, bool(crop))
                    continue
                j0 = int(np.searchsorted(starts[1], b0, side="right") - 1)
                j1 = int(np.searchsorted(starts[1], b1, side="left"))
                blocks = [[(x.name, bn, 0, i, j) for j in range(j0, j1)] for i in range(i0, i1)]
                offsets = (a0 - int(starts[0][i0]), a1 - int(starts[0][i0]), b0 - int(starts[1][j0]),
                           b1 - int(starts[1][j0]))
                layer[key] = (_run_tile, net_key, blocks, offsets, sl, threads, t.alignment, bool(crop))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=deps)
    out_chunks = (in_chunks[0],) + tuple((d,) for d in t.out_shape[1:-2]) + t.out_chunks
    return da.Array(graph, name, out_chunks, meta=np.empty((0,) * rank, dtype=t.out_dtype))
