"""fastpoint operations on dask arrays: images and batches larger than one machine's memory.

``conv2d``, ``conv1x1``, ``max_pool2d``, ``avg_pool2d`` and ``upsample`` take a dask array in NCHW (or
NHWC, or unbatched 3-d) chunked in N, H and W, and return a lazy dask array that is **exactly** the
in-memory result of the same fastpoint function on the same data, image borders included.

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
from .core.image_args import spatial_axes
from .core.spec import DTYPES, IntOrPair, Padding, as_array, check_layout, make_spec
from .core.threads import thread_limit
from .network.tiled import TilingError, run, tiling  # noqa: F401 - whole networks (fastpoint/network/tiled.py)
from .ops.pooling import pool_params, reduce_windows
from .ops.upsample import bilinear_valid_axis, nearest, upsample_params

__all__ = ["avg_pool2d", "conv1x1", "conv2d", "max_pool2d", "upsample"]


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
