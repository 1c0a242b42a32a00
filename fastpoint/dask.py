"""fastpoint operations on dask arrays: images and batches larger than one machine's memory.

``conv2d``, ``conv1x1``, ``max_pool2d``, ``avg_pool2d`` and ``upsample`` take a dask array in NCHW (or
NHWC, or unbatched 3-d) chunked in N, H and W, and return a lazy dask array that is **exactly** the
in-memory result of the same fastpoint function on the same data, image borders included.  ``conv1d``
(NCL / NLC, chunked in N and L) is the windowed plan below on the one-row view; ``conv_transpose2d`` and
``conv_transpose1d`` are cut by their outputs (see ``conv_transpose2d``).

How a windowed operation (convolution, pooling, bilinear upsampling) is cut into chunks, per spatial
axis with window span ``E = dilation*(K-1)+1``, stride ``s`` and padding ``lo``/``hi``:

1. channels are put in one chunk (a convolution needs every input channel of a pixel);
2. the image is padded once with the operation's padding value (zeros; -inf for max pooling; the edge
   pixel for bilinear upsampling), so chunks never need to know where the image border is;
3. chunk boundaries are moved down to multiples of ``s`` (a chunk then owns the outputs whose windows
   start inside it) and chunks smaller than ``max(E, s)`` are merged with a neighbour;
4. each chunk is extended by the ``E - s`` following rows/columns of its neighbour
   (``dask.array.overlap.overlap`` with depth ``(0, E - s)``, no extension at the array's end), and the
   "valid" (unpadded) operation runs on it: a chunk of ``L`` rows gives ``L / s`` output rows.

Every output is thus computed from the same input values, with the same arithmetic in the same order,
as in memory; the tests compare with ``==`` on integer-valued data.

Weights travel once: the ``fastpoint.Conv2d`` layer is one key of the graph (``dask.delayed``) on which
every chunk task depends, so the distributed scheduler ships it to each worker once and the worker packs
it on first use (packing is per ISA, so it happens where the kernel runs, not on the client).

Threads: dask already runs one task per core (the threaded scheduler's pool has one thread per CPU; a
``LocalCluster`` has ``n_workers * threads_per_worker`` slots, and its nanny sets ``OMP_NUM_THREADS=1``
in workers for the same reason). A kernel that also started one thread per core in every task would
put cores x cores threads on the cores, and OpenMP teams that spin-wait then slow each other down. So
each task runs its kernel with **one thread** (a per-Python-thread limit, see
``fastpoint.core.threads.thread_limit``; the process-wide ``fp.set_num_threads`` is not touched). Pass
``num_threads=k`` when dask runs fewer tasks at once than there are cores (e.g. a single worker with one
thread slot on a many-core node), so that ``tasks at once * k`` is about the core count.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fastpoint.dask needs dask: pip install 'fastpoint[dask]' "
                      "(or pip install 'dask[array,distributed]' zarr)") from exc

from .api import Conv2d
from .conv1d import Conv1d, padding_pair
from .conv_transpose import ConvTranspose1d, ConvTranspose2d
from .core.image_args import spatial_axes
from .core.spec import DTYPES, IntOrPair, Padding, as_array, check_layout, make_spec
from .core.threads import thread_limit
from .network.tiled import TilingError, run, tiling  # noqa: F401 - whole networks (fastpoint/network/tiled.py)
from .ops.pooling import pool_params, reduce_windows
from .ops.upsample import bilinear_valid_axis, nearest, upsample_params

__all__ = ["avg_pool2d", "conv1d", "conv1x1", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool2d",
           "upsample"]


# --------------------------------------------------------------------------------------------------
# inputs


def _as_dask(x, layout: str) -> Tuple[da.Array, bool]:
    check_layout(layout)
    if not isinstance(x, da.Array):
        x = da.from_array(as_array("x", x))
    if x.dtype not in DTYPES:
        raise TypeError(f"x must be float32 or float64, got {x.dtype} with shape {x.shape}")
    if x.ndim == 3:
        return x[None], False
    if x.ndim == 4:
        return x, True
    shape = "(N, C, H, W) or (C, H, W)" if layout == "NCHW" else "(N, H, W, C) or (H, W, C)"
    raise ValueError(f"x must be {shape} for layout {layout}, got {x.ndim}-d shape {x.shape}")


def _threads(num_threads: Optional[int]) -> int:
    if num_threads is None:
        return 1
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be None or an int >= 1, got {num_threads!r}")
    return num_threads


# --------------------------------------------------------------------------------------------------
# the windowed-operation plan


def _axis_chunks(chunks: Sequence[int], lo: int, hi: int, span: int, stride: int) -> Tuple[int, ...]:
    """Chunks of the padded axis: starts at multiples of ``stride``, each at least ``max(span, stride)``."""
    total = sum(chunks) + lo + hi
    smallest = max(span, stride)
    starts: List[int] = [0]
    edge = lo
    for size in chunks[:-1]:
        edge += size
        start = edge - edge % stride
        if start - starts[-1] >= smallest:
            starts.append(start)
    while len(starts) > 1 and total - starts[-1] < smallest:
        starts.pop()
    bounds = starts + [total]
    return tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))


def _out_chunks(chunks: Tuple[int, ...], span: int, stride: int, up: int) -> Tuple[int, ...]:
    extra = max(span - stride, 0)
    sizes = [(c + extra - span) // stride + 1 for c in chunks[:-1]]
    sizes.append((chunks[-1] - span) // stride + 1)
    return tuple(up * s for s in sizes)


def _windowed(x: da.Array, layout: str, pads, spans, strides, ups, fill, fn: Callable, out_channels: int,
              dtype, *args, name: str, **kwargs) -> da.Array:
    """Run ``fn`` ("valid" operation) on padded, stride-aligned, overlapped blocks of ``x`` (4-d)."""
    ha, wa = spatial_axes(layout)
    ca = 1 if layout == "NCHW" else 3
    x = x.rechunk({ca: -1})
    chunks_h = _axis_chunks(x.chunks[ha], *pads[0], spans[0], strides[0])
    chunks_w = _axis_chunks(x.chunks[wa], *pads[1], spans[1], strides[1])
    if any(p for pair in pads for p in pair):
        width = [(0, 0)] * 4
        width[ha], width[wa] = pads
        if fill == "edge":
            x = da.pad(x, width, mode="edge")
        else:
            x = da.pad(x, width, mode="constant", constant_values=fill)
    x = x.rechunk({ha: chunks_h, wa: chunks_w})
    depth = {ha: (0, max(spans[0] - strides[0], 0)), wa: (0, max(spans[1] - strides[1], 0))}
    if any(d[1] for d in depth.values()):
        x = da.overlap.overlap(x, depth=depth, boundary="none")
    out = [x.chunks[0], (out_channels,), None, None]
    if ca == 3:
        out = [x.chunks[0], None, None, (out_channels,)]
    out[ha] = _out_chunks(chunks_h, spans[0], strides[0], ups[0])
    out[wa] = _out_chunks(chunks_w, spans[1], strides[1], ups[1])
    return da.map_blocks(fn, x, *args, chunks=tuple(out), dtype=dtype, meta=np.empty((0,) * 4, dtype=dtype),
                         name=f"{name}-{tokenize(x, fn, *args, kwargs)}", **kwargs)


def _unbatch(y: da.Array, batched: bool) -> da.Array:
    return y if batched else y[0]


# --------------------------------------------------------------------------------------------------
# block functions (run on the workers)


def _conv_block(block: np.ndarray, layer: Conv2d, threads: int) -> np.ndarray:
    with thread_limit(threads):
        return layer(block)


def _pool_block(block: np.ndarray, k, s, layout: str, op: str) -> np.ndarray:
    axes = spatial_axes(layout)
    out_hw = tuple((block.shape[a] - k[i]) // s[i] + 1 for i, a in enumerate(axes))
    if op == "max":
        return reduce_windows(block, axes, k, s, out_hw, np.maximum)
    out = reduce_windows(block, axes, k, s, out_hw, np.add)
    if op == "avg":
        out /= block.dtype.type(k[0] * k[1])
    return out


def _nearest_block(block: np.ndarray, s, layout: str) -> np.ndarray:
    return nearest(block, spatial_axes(layout), s)


def _bilinear_block(block: np.ndarray, s, layout: str) -> np.ndarray:
    ha, wa = spatial_axes(layout)
    return np.ascontiguousarray(bilinear_valid_axis(bilinear_valid_axis(block, wa, s[1]), ha, s[0]))


# --------------------------------------------------------------------------------------------------
# public operations


def conv2d(x, weight, bias=None, stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1,
           groups: int = 1, *, activation: Optional[str] = None, layout: str = "NCHW", backend: str = "auto",
           num_threads: Optional[int] = None) -> da.Array:
    """:func:`fastpoint.conv2d` over a dask array chunked in N, H and W; exact (see the module doc)."""
    full = Conv2d(weight, bias, stride, padding, dilation, groups, activation=activation, layout=layout,
                  backend=backend)  # validates the weights on the client, before any graph is built
    x, batched = _as_dask(x, layout)
    spec = make_spec(full._layer, tuple(int(s) for s in x.shape), full.weight_shape)
    ha, wa = spatial_axes(layout)
    if x.numblocks[ha] == 1 and x.numblocks[wa] == 1:
        # whole images per chunk (a batch chunked in N only): no halo, the kernel pads by itself
        key = "fastpoint-conv2d-weights-" + tokenize(full._weight, full._bias, repr(full))
        layer_key = dask.delayed(full, name=key, pure=True, traverse=False)
        ca = 1 if layout == "NCHW" else 3
        x = x.rechunk({ca: -1})
        chunks = list(x.chunks)
        chunks[ca] = (spec.layer.cout,)
        chunks[ha], chunks[wa] = (spec.oh,), (spec.ow,)
        y = da.map_blocks(_conv_block, x, layer_key, _threads(num_threads), chunks=tuple(chunks), dtype=x.dtype,
                          meta=np.empty((0,) * 4, dtype=x.dtype),
                          name="fastpoint-conv2d-" + tokenize(x, key, num_threads))
        return _unbatch(y, batched)
    # the per-chunk layer: same weights, no padding (the padding is in the dask array)
    layer = Conv2d(full._weight, full._bias, stride, 0, dilation, groups, activation=activation, layout=layout,
                   backend=backend)
    key = "fastpoint-conv2d-weights-" + tokenize(full._weight, full._bias, repr(layer))
    layer_key = dask.delayed(layer, name=key, pure=True, traverse=False)
    L = spec.layer
    spans = (L.dilation[0] * (L.kh - 1) + 1, L.dilation[1] * (L.kw - 1) + 1)
    pads = ((spec.pad_top, spec.pad_bottom), (spec.pad_left, spec.pad_right))
    y = _windowed(x, layout, pads, spans, L.stride, (1, 1), 0.0, _conv_block, L.cout, x.dtype, layer_key,
                  _threads(num_threads), name="fastpoint-conv2d")
    return _unbatch(y, batched)


def conv1x1(x, weight, bias=None, stride: IntOrPair = 1, *, activation: Optional[str] = None,
            layout: str = "NCHW", backend: str = "auto", num_threads: Optional[int] = None) -> da.Array:
    """:func:`fastpoint.conv1x1` over a dask array; ``weight`` is ``(Cout, Cin)`` or ``(Cout, Cin, 1, 1)``."""
    weight = as_array("weight", weight)
    if weight.ndim == 2:
        weight = weight[:, :, None, None]
    elif weight.ndim != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(f"conv1x1 weight must be (Cout, Cin) or (Cout, Cin, 1, 1), got shape {weight.shape}")
    return conv2d(x, weight, bias, stride, 0, 1, 1, activation=activation, layout=layout, backend=backend,
                  num_threads=num_threads)


def _pool(x, kernel_size, stride, padding, layout: str, op: str) -> da.Array:
    k, s, p = pool_params(kernel_size, stride, padding)
    x, batched = _as_dask(x, layout)
    ha, wa = spatial_axes(layout)
    for name, axis, i in (("height", ha, 0), ("width", wa, 1)):
        if x.shape[axis] + 2 * p[i] < k[i]:
            raise ValueError(f"kernel_size {k[i]} is larger than the padded {name} {x.shape[axis]}+2*{p[i]} "
                             f"of x shape {tuple(x.shape)}")
    channels = x.shape[1 if layout == "NCHW" else 3]
    fill = -np.inf if op == "max" else 0.0
    y = _windowed(x, layout, ((p[0], p[0]), (p[1], p[1])), k, s, (1, 1), fill, _pool_block, channels, x.dtype,
                  k, s, layout, op, name=f"fastpoint-{op}-pool2d")
    return y, batched


def max_pool2d(x, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0, *,
               layout: str = "NCHW") -> da.Array:
    """:func:`fastpoint.max_pool2d` over a dask array chunked in N, H and W; exact."""
    y, batched = _pool(x, kernel_size, stride, padding, layout, "max")
    return _unbatch(y, batched)


def avg_pool2d(x, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0, *,
               count_include_pad: bool = True, layout: str = "NCHW") -> da.Array:
    """:func:`fastpoint.avg_pool2d` over a dask array chunked in N, H and W; exact."""
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    k, s, p = pool_params(kernel_size, stride, padding)
    if count_include_pad or p == (0, 0):
        y, batched = _pool(x, k, s, p, layout, "avg")
        return _unbatch(y, batched)
    # the divisor depends on the position (fewer real pixels at the border): pool a ones image alike
    sums, batched = _pool(x, k, s, p, layout, "sum")
    ha, wa = spatial_axes(layout)
    xd, _ = _as_dask(x, layout)
    ones = da.ones((1, 1, xd.shape[ha], xd.shape[wa]), dtype=xd.dtype, chunks=(1, 1, xd.chunks[ha], xd.chunks[wa]))
    counts, _ = _pool(ones, k, s, p, "NCHW", "sum")
    counts = counts if layout == "NCHW" else counts.transpose(0, 2, 3, 1)
    return _unbatch(sums / counts, batched)


def upsample(x, scale_factor: IntOrPair, mode: str = "nearest", align_corners: bool = False, *,
             layout: str = "NCHW") -> da.Array:
    """:func:`fastpoint.upsample` over a dask array chunked in N, H and W; exact.

    ``mode="bilinear"`` reads one pixel of each neighbouring chunk; ``align_corners=True`` is not
    supported here (its sampling positions depend on the whole image size).
    """
    s = upsample_params(scale_factor, mode, align_corners)
    x, batched = _as_dask(x, layout)
    ha, wa = spatial_axes(layout)
    if mode == "nearest":
        chunks = list(x.chunks)
        chunks[ha] = tuple(c * s[0] for c in chunks[ha])
        chunks[wa] = tuple(c * s[1] for c in chunks[wa])
        y = da.map_blocks(_nearest_block, x, s, layout, chunks=tuple(chunks), dtype=x.dtype,
                          meta=np.empty((0,) * 4, dtype=x.dtype))
        return _unbatch(y, batched)
    if align_corners:
        raise NotImplementedError("fastpoint.dask.upsample supports align_corners=False only (with "
                                  "align_corners=True every sampling position depends on the whole image size)")
    channels = x.shape[1 if layout == "NCHW" else 3]
    y = _windowed(x, layout, ((1, 1), (1, 1)), (3, 3), (1, 1), s, "edge", _bilinear_block, channels, x.dtype,
                  s, layout, name="fastpoint-upsample-bilinear")
    return _unbatch(y, batched)


# --------------------------------------------------------------------------------------------------
# conv1d and transposed convolution


def _as_dask_1d(x, layout: str) -> Tuple[da.Array, bool]:
    """A 1-d input (3-d, or 2-d unbatched) as the dask array of its one-row 2-d view, (N, C, 1, L) for NCL,
    (N, 1, L, C) for NLC, and whether it was batched."""
    if layout not in ("NCL", "NLC"):
        raise ValueError(f"layout must be 'NCL' or 'NLC' for a 1-d convolution, got {layout!r}")
    if not isinstance(x, da.Array):
        x = da.from_array(as_array("x", x))
    if x.ndim not in (2, 3):
        shape = "(N, C, L) or (C, L)" if layout == "NCL" else "(N, L, C) or (L, C)"
        raise ValueError(f"x must be {shape} for layout {layout}, got {x.ndim}-d shape {x.shape}")
    return _as_dask(x[..., None, :] if layout == "NCL" else x[..., None, :, :], _LAYOUTS_2D[layout])


_LAYOUTS_2D = {"NCL": "NCHW", "NLC": "NHWC"}


def _conv1d_block(block: np.ndarray, layer: Conv1d, layout: str, threads: int) -> np.ndarray:
    with thread_limit(threads):
        if layout == "NCL":
            return layer(block[:, :, 0, :])[:, :, None, :]
        return layer(block[:, 0, :, :])[:, None, :, :]


def conv1d(x, weight, bias=None, stride: int = 1, padding=0, dilation: int = 1, groups: int = 1, *,
           activation: Optional[str] = None, layout: str = "NCL", backend: str = "auto",
           num_threads: Optional[int] = None) -> da.Array:
    """:func:`fastpoint.conv1d` over a dask array chunked in N and L; exact, causal ``(left, right)`` pairs
    included: the windowed plan of the module doc on the one-row view, the padding in the dask array."""
    full = Conv1d(weight, bias, stride, padding, dilation, groups, activation=activation, layout=layout,
                  backend=backend)  # validates the weights on the client
    x, batched = _as_dask_1d(x, layout)
    w = as_array("weight", weight)
    k = 1 if w.ndim == 2 else int(w.shape[2])
    span = dilation * (k - 1) + 1
    pads = padding_pair(padding)
    if pads == "same":
        pads = ((span - 1) // 2, span - 1 - (span - 1) // 2)  # the extra sample on the right, as PyTorch
    length = x.shape[3 if layout == "NCL" else 2]
    ca = 1 if layout == "NCL" else 3
    cin = int(w.shape[1]) * groups
    if x.shape[ca] != cin:
        raise ValueError(f"x has {x.shape[ca]} channels (shape {x.shape}, layout {layout}) but weight shape "
                         f"{w.shape} expects {cin}")
    if length + pads[0] + pads[1] < span:
        raise ValueError(f"kernel {k} with dilation {dilation} spans {span}, more than the padded input "
                         f"{length + sum(pads)} (x shape {x.shape}, padding {padding!r})")
    layer = Conv1d(full._conv._weight[:, :, 0, :], full._conv._bias, stride, 0, dilation, groups,
                   activation=activation, layout=layout, backend=backend)
    key = "fastpoint-conv1d-weights-" + tokenize(layer._conv._weight, layer._conv._bias, repr(layer))
    layer_key = dask.delayed(layer, name=key, pure=True, traverse=False)
    cout = int(w.shape[0])
    y = _windowed(x, _LAYOUTS_2D[layout], ((0, 0), pads), (1, span), (1, stride), (1, 1), 0.0,
                  _conv1d_block, cout, x.dtype, layer_key, layout, _threads(num_threads), name="fastpoint-conv1d")
    y = y[:, :, 0, :] if layout == "NCL" else y[:, 0, :, :]
    return _unbatch(y, batched)


def _transpose_axis_plan(in_chunks: Sequence[int], size: int, out: int, k: int, s: int, p: int, d: int):
    """Output chunks of one axis (near the input's, times the stride), and for each the input rows
    ``[lo, hi)`` that reach it and where its first output row lies in their uncropped output."""
    edges = [0]
    for c in in_chunks[:-1]:
        edges.append(edges[-1] + c)
    bounds = sorted({min(max(e * s - p, 0), out) for e in edges} | {out})
    bounds = [0] + [b for b in bounds if b > 0]
    span = d * (k - 1) + 1
    plan = []
    for o0, o1 in zip(bounds[:-1], bounds[1:]):
        # output row o (cropped) is reached by inputs i with i*s = o + p - j*d for a tap j
        lo = max(0, -(-(o0 + p - span + 1) // s))
        hi = min(size, (o1 - 1 + p) // s + 1)
        plan.append((o0, o1, lo, hi, o0 + p - lo * s))
    return plan


def _transpose_block(xb: Optional[np.ndarray], layer: ConvTranspose2d, shape: Tuple[int, ...], offsets,
                     fill: np.ndarray, layout: str, threads: int) -> np.ndarray:
    """Output block ``shape`` whose first row/column is row/column ``offsets`` of the uncropped output of
    the input rows ``xb`` (None: no input reaches the block, which is the bias alone)."""
    ha, wa = spatial_axes(layout)
    out = np.empty(shape, dtype=fill.dtype)
    out[...] = fill[:, None, None] if layout == "NCHW" else fill
    if xb is None:
        return out
    with thread_limit(threads):
        y = layer(np.ascontiguousarray(xb))
    src, dst = [slice(None)] * 4, [slice(None)] * 4
    for axis, r0 in zip((ha, wa), offsets):
        a, b = max(r0, 0), min(r0 + shape[axis], y.shape[axis])
        if b <= a:
            return out
        src[axis], dst[axis] = slice(a, b), slice(a - r0, b - r0)
    out[tuple(dst)] = y[tuple(src)]
    return out


def conv_transpose2d(x, weight, bias=None, stride: IntOrPair = 1, padding: IntOrPair = 0,
                     output_padding: IntOrPair = 0, groups: int = 1, dilation: IntOrPair = 1, *,
                     activation: Optional[str] = None, layout: str = "NCHW", backend: str = "auto",
                     num_threads: Optional[int] = None) -> da.Array:
    """:func:`fastpoint.conv_transpose2d` over a dask array chunked in N, H and W; exact.

    Cut by the output: each output chunk (about an input chunk's rows times the stride) is computed from
    the input rows that reach it, ``[ceil((o0 + p - span + 1) / s), floor((o1 - 1 + p) / s)]``, by the
    unpadded layer, and cropped out of that slice's uncropped output; rows that no input reaches
    (``output_padding``, kernels smaller than the stride) get the bias.  Every output thus sums the same
    products as in memory.
    """
    full = ConvTranspose2d(weight, bias, stride, padding, output_padding, groups, dilation,
                           activation=activation, layout=layout, backend=backend)  # validates the weights
    L = full._layer
    x, batched = _as_dask(x, layout)
    ha, wa = spatial_axes(layout)
    ca = 1 if layout == "NCHW" else 3
    if x.shape[ca] != L.cin:
        raise ValueError(f"x has {x.shape[ca]} channels (shape {x.shape}, layout {layout}) but weight shape "
                         f"{full.weight_shape} (Cin, Cout/groups, KH, KW) expects {L.cin}")
    h, w = x.shape[ha], x.shape[wa]
    oh, ow = L.out_size(h, w)
    if oh < 1 or ow < 1:
        raise ValueError(f"the output would be empty: {oh}x{ow} from x shape {x.shape} with weight "
                         f"{full.weight_shape}, stride {L.stride}, padding {L.padding}")
    x = x.rechunk({ca: -1})
    layer = ConvTranspose2d(full._weight, full._bias, L.stride, 0, 0, L.groups, L.dilation,
                            activation=activation, layout=layout, backend=backend)
    key = "fastpoint-conv-transpose2d-weights-" + tokenize(full._weight, full._bias, repr(layer))
    layer_key = dask.delayed(layer, name=key, pure=True, traverse=False)
    fill = np.zeros(L.cout, x.dtype) if full._bias is None else full._bias.astype(x.dtype)
    fill = np.maximum(fill, 0) if L.relu else fill
    plan_h = _transpose_axis_plan(x.chunks[ha], h, oh, L.kh, L.stride[0], L.padding[0], L.dilation[0])
    plan_w = _transpose_axis_plan(x.chunks[wa], w, ow, L.kw, L.stride[1], L.padding[1], L.dilation[1])
    threads = _threads(num_threads)
    block = dask.delayed(_transpose_block, pure=True)
    rows, n0 = [], 0
    for nb in x.chunks[0]:
        row_h = []
        for o0h, o1h, loh, hih, rh in plan_h:
            row_w = []
            for o0w, o1w, low, hiw, rw in plan_w:
                shape = [nb, L.cout, o1h - o0h, o1w - o0w] if layout == "NCHW" else [nb, o1h - o0h, o1w - o0w, L.cout]
                index = [slice(n0, n0 + nb), slice(None), slice(None), slice(None)]
                index[ha], index[wa] = slice(loh, hih), slice(low, hiw)
                xb = x[tuple(index)] if loh < hih and low < hiw else None
                part = block(xb, layer_key, tuple(shape), (rh, rw), fill, layout, threads)
                row_w.append(da.from_delayed(part, tuple(shape), dtype=x.dtype))
            row_h.append(row_w)
        rows.append(row_h)
        n0 += nb
    y = da.block([[[[b] for b in rw] for rw in rh] for rh in rows]) if layout == "NHWC" else \
        da.block([[row] for row in rows])  # one channel block
    return _unbatch(y, batched)


def conv_transpose1d(x, weight, bias=None, stride: int = 1, padding: int = 0, output_padding: int = 0,
                     groups: int = 1, dilation: int = 1, *, activation: Optional[str] = None, layout: str = "NCL",
                     backend: str = "auto", num_threads: Optional[int] = None) -> da.Array:
    """:func:`fastpoint.conv_transpose1d` over a dask array chunked in N and L; exact (``conv_transpose2d``
    on the one-row view)."""
    ConvTranspose1d(weight, bias, stride, padding, output_padding, groups, dilation, activation=activation,
                    layout=layout, backend=backend)  # validates every argument as the in-memory layer does
    x, batched = _as_dask_1d(x, layout)
    w = as_array("weight", weight)
    y = conv_transpose2d(x, w[:, :, None, :], bias, (1, stride), (0, padding), (0, output_padding), groups,
                         (1, dilation), activation=activation, layout=_LAYOUTS_2D[layout], backend=backend,
                         num_threads=num_threads)
    y = y[:, :, 0, :] if layout == "NCL" else y[:, 0, :, :]
    return _unbatch(y, batched)
