"""Numba kernels, imported on first use of ``backend="numba"`` (importing this compiles nothing).

Which kernel runs:

* depthwise (one input channel per group, one output per group): :mod:`.depthwise`;
* everything else, 1x1 and KxK, dense and grouped: a register-tiled GEMM over (channels x taps),
  :mod:`.dense_nchw` (vectors along output pixels) or :mod:`.dense_nhwc` (vectors along output
  channels).

Each jitted function is compiled once per dtype (float32, float64) and cached on disk; flags
(ReLU) and sizes are plain ints so that they never create new signatures.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ...core.spec import ConvSpec, LayerSpec
from . import blocking, workers
from .cacheload import cache_kernels
from .geometry import geometry
from .table import SMALL_PLANE_OW, pick
from .weight_pack import step_index

cache_kernels(vars(workers))  # its spin loops are cached kernels too (cacheload.py)


@dataclass(frozen=True)
class Packed:
    kind: str            # "nchw", "nhwc", "dw_nchw", "dw_nhwc"
    weights: np.ndarray  # flat, kernel-specific order (see pack); dense NCHW: the weights as they are
    # depthwise NCHW: [channel block][tap][lanes] for the small-plane kernel (depthwise_small); dense NCHW:
    # each group's last channel tile, packed [group][ci][tap][MR] when partial (dense_nchw.py), else empty
    by_lanes: Optional[np.ndarray] = None


def _is_depthwise(layer: LayerSpec) -> bool:
    return layer.groups > 1 and layer.cin_g == 1 and layer.cout_g == 1


def _kind(layer: LayerSpec) -> str:
    """The kind of ``layer``'s packing (Packed.kind)."""
    return ("dw_" if _is_depthwise(layer) else "") + layer.layout.lower()


def packed_like(layer: LayerSpec, dtype) -> Packed:
    """Zeroed packing buffers of ``layer`` (zeros stay in the padding lanes; pack_into fills the rest)."""
    g, cog, taps = layer.groups, layer.cout_g, layer.kh * layer.kw
    dtype = np.dtype(dtype)
    if _is_depthwise(layer):
        cpad = _round_up(g, blocking.lanes(dtype.itemsize))
        if layer.layout == "NCHW":  # [c][tap], and [channel block][tap][lanes]
            return Packed("dw_nchw", np.zeros(g * taps, dtype), np.zeros(cpad * taps, dtype))
        return Packed("dw_nhwc", np.zeros(taps * cpad, dtype))  # [tap][c], channels padded to a whole vector
    ksteps = layer.cin_g * taps
    if layer.layout == "NCHW":  # the rows, and the partial tiles
        return Packed("nchw", np.zeros(g * cog * ksteps, dtype),
                      np.zeros(g * ksteps * blocking.MR if cog % blocking.MR else 0, dtype))
    return Packed("nhwc", np.zeros(g * _round_up(cog, blocking.tile_cols(dtype.itemsize)) * ksteps, dtype))


def _fill_tiles(dst: np.ndarray, src: np.ndarray, tile: int) -> None:
    """``dst[g, t, a, b, i] = src[g, t * tile + i, a, b]`` for every source row; dst's padding is left alone."""
    rows = src.shape[1]
    full = rows // tile
    if full:
        dst[:, :full] = src[:, :full * tile].reshape(src.shape[0], full, tile, *src.shape[2:]).transpose(0, 1, 3, 4, 2)
    if rows > full * tile:
        dst[:, full, :, :, :rows - full * tile] = src[:, full * tile:].transpose(0, 2, 3, 1)


def pack_into(packed: Packed, layer: LayerSpec, weight: np.ndarray) -> Packed:
    """Write ``weight`` into ``packed`` (from packed_like) in the kernels' order, without a temporary."""
    g, cog, cig, taps = layer.groups, layer.cout_g, layer.cin_g, layer.kh * layer.kw
    w = weight.reshape(g, cog, cig, taps)
    if packed.kind == "dw_nchw":
        packed.weights.reshape(g, taps)[...] = w.reshape(g, taps)
        nl = blocking.lanes(weight.itemsize)
        _fill_tiles(packed.by_lanes.reshape(1, -1, taps, 1, nl), w.reshape(1, g, taps, 1), nl)
    elif packed.kind == "dw_nhwc":
        packed.weights.reshape(taps, -1)[:, :g] = w.reshape(g, taps).T
    elif packed.kind == "nchw":  # the rows; the partial tiles [g][ci][tap][MR]
        packed.weights.reshape(w.shape)[...] = w
        _fill_tail(packed.by_lanes, w)
    else:  # [g][co_tile][tap][ci][NR]
        nr = blocking.tile_cols(weight.itemsize)
        _fill_tiles(packed.weights.reshape(g, -1, taps, cig, nr), w.transpose(0, 1, 3, 2), nr)
    return packed


def _fill_tail(tail: np.ndarray, w: np.ndarray) -> None:
    """Each group's last, partial channel tile of ``w`` (g, cog, cig, taps) into ``tail`` (dense NCHW)."""
    g, cog = w.shape[:2]
    rest = cog % blocking.MR
    if rest:
        tail.reshape(g, -1, blocking.MR)[:, :, :rest] = w[:, cog - rest:].reshape(g, rest, -1).transpose(0, 2, 1)


def pack(layer: LayerSpec, weight: np.ndarray) -> Packed:
    return pack_into(packed_like(layer, weight.dtype), layer, weight)


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


#: while bind_one_shot binds: the padded bias arrays the binder makes, for its set_bias (this thread's)
_recording = threading.local()


def _padded_bias(bias: Optional[np.ndarray], groups: int, per_group: int, width: int, dtype) -> np.ndarray:
    """Bias as [group][per_group rounded up to width], zeros in the padding (and without a bias)."""
    out = np.zeros((groups, _round_up(per_group, width)), dtype)
    if bias is not None:
        out[:, :per_group] = bias.reshape(groups, per_group)
    made = getattr(_recording, "biases", None)
    if made is not None:
        made.append((out, groups, per_group))
    return out.ravel()


def _preparer(spec: ConvSpec, geo, keep: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """``prepare(x)``: the kernel's input, flat: ``x`` itself, or its padded, phase-split copy (prepare.py),
    in a new array per call, or with ``keep`` (a launcher used by one Python thread only: a one-shot plan's)
    in one array the launcher keeps (the copy rewrites all of it)."""
    if geo.direct:
        return lambda x: x.reshape(-1)
    from .prepare import prepare_nchw, prepare_nhwc

    L = spec.layer
    (sh, sw), pt, pl = L.stride, spec.pad_top, spec.pad_left
    size = spec.n * L.cin * geo.plane
    if L.layout == "NCHW":
        kernel, args = prepare_nchw, (spec.n * L.cin, spec.h, spec.w)
    else:
        kernel, args = prepare_nhwc, (spec.n, spec.h, spec.w, L.cin)
    args += (geo.phase_py, geo.phase_px, geo.hq1, geo.wq, sh, sw, pt, pl)
    dtype = L.dtype

    kept = np.empty(size, dtype) if keep else None

    def prepare(x: np.ndarray) -> np.ndarray:
        xp = np.empty(size, dtype) if kept is None else kept
        kernel(x.reshape(-1), xp, *args)
        return xp

    return prepare


# Below this much work (estimated at one thread) a call runs on the caller alone.  A helper now starts
# ~15 us after the call (docs/numba.md, "Threads"); measured at 2 threads, 150 ms pauses:
# mb2_dw_192_28 (~90 us of work) 0.095 -> 0.083 ms with a helper; mb2_dw_384_14 (~45 us) and
# mb2_dw_960_7 gained nothing or lost with one (0.049-0.061 / 0.037-0.068 ms against 0.051 / 0.037 alone).
MIN_PARALLEL_S = 60e-6
# rough one-thread speeds of the kernels here, for that estimate only (docs/numba.md)
_DENSE_FLOPS = 100e9
_DEPTHWISE_FLOPS = 15e9
_DEPTHWISE_SMALL_FLOPS = 30e9  # depthwise_small.py: 25-37 GFLOP/s on mb2_dw_960_7 .. mb2_dw_192_28 (13:05 UTC)


# dense NCHW layers with K in one chunk and at most this many channel tiles (of 6) read their input in
# place instead of packing it (dense_nchw._tile_direct)
IN_PLACE_CO_TILES = 3

@lru_cache(maxsize=64)
def _small_tables(h: int, w: int, pt: int, pl: int, hp: int, wp: int, kh: int, kw: int, dh: int, dw: int,
                  nl: int):
    """Index tables of depthwise_small.dw_nchw_small (see its docstring), cached per shape."""
    r, c = np.divmod(np.arange(h * w, dtype=np.int64), w)
    inside = (r + pt < hp) & (c + pl < wp)
    pix2tile = np.full(h * w + nl, hp * wp, np.int64)
    pix2tile[:h * w] = np.where(inside, (r + pt) * wp + c + pl, hp * wp)
    toff = np.array([ky * dh * wp + kx * dw for ky in range(kh) for kx in range(kw)], np.int64)
    return pix2tile, np.arange(nl, dtype=np.int64), toff


def useful_threads(spec: ConvSpec, threads: int) -> int:
    """``threads``, or 1 when the call is too small for a helper to pay off."""
    L = spec.layer
    flops = 2.0 * spec.n * L.cout * spec.oh * spec.ow * L.cin_g * L.kh * L.kw
    rate = _DENSE_FLOPS
    if _is_depthwise(L):
        small = L.layout == "NCHW" and spec.ow < SMALL_PLANE_OW
        rate = _DEPTHWISE_SMALL_FLOPS if small else _DEPTHWISE_FLOPS
    return 1 if flops / rate < MIN_PARALLEL_S else threads


def run(spec: ConvSpec, packed: Packed, x: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray,
        threads: int) -> None:
    bind(spec, packed, bias)(x, out, threads)


Launch = Callable[[np.ndarray, np.ndarray, int], None]


def bind(spec: ConvSpec, packed: Packed, bias: Optional[np.ndarray]) -> Launch:
    """Everything of a call that depends on the layer and shape only, done once: ``launch(x, out, threads)``.

    The kernel is the first row of the table (table.py) that applies to the packing and the shape;
    its binder does the rest.  What is left per call: the prepared input copy (when the kernel needs
    one), the thread choice and the kernel's argument tuple.  A ``Conv2d``'s repeat calls keep the
    launcher (fastpoint/core/callplan.py), which saves the index tables, padded bias and block sizes of
    every call (~10 us of a 40 us layer).
    """
    return _BINDERS[pick(packed.kind, spec).family](spec, packed, bias)


OneShot = Callable[[np.ndarray, np.ndarray, np.ndarray, int], None]


def bind_one_shot(spec: ConvSpec, bias: Optional[np.ndarray]) -> Tuple[OneShot, Callable[[np.ndarray], None]]:
    """A one-shot plan's launcher, with buffers of its own: ``(run, set_bias)``.

    ``run(x, w, out, threads)`` runs the layer with the weights ``w`` (C-contiguous, the layer's dtype);
    ``set_bias(b)`` writes another bias of the same shape into the launcher's padded bias arrays.  Per call, beyond the
    kernel (docs/call-path.md):

    * dense NCHW: nothing is packed; the kernel broadcasts the caller's weights in place, as a layer's
      copy of them (dense_nchw.py), and only each group's last partial channel tile is copied (at most
      5 rows);
    * dense NHWC: the kernel packs each block of channel tiles where it uses it (dense_nhwc.py,
      weight_pack.py);
    * depthwise: one jitted copy into what the kernel reads (weight_pack.pack_depthwise; the weights are
      small: 960 x 9 for MobileNet's largest).

    The results are the prepacked layer's bit for bit: the same values, in the same order, reach the
    same micro-kernels.  No pass looks for non-finite weights (weight_pack.py: the kernels read written-out
    zero padding, so NaN and Inf weights give the reference's NaNs on padded taps by themselves).
    """
    L = spec.layer
    made: List[Tuple[np.ndarray, int, int]] = []
    _recording.biases = made
    try:
        family = pick(_kind(L), spec).family
        dense = family in ("dense_nchw", "dense_nhwc")
        if family == "dense_nchw":  # the rows come with each call: only the partial tiles' buffer
            tail = L.groups * L.cin_g * L.kh * L.kw * blocking.MR if L.cout_g % blocking.MR else 0
            packed = Packed("nchw", np.empty(0, L.dtype), np.zeros(tail, L.dtype))
        elif family == "dense_nhwc":  # packed block by block inside the kernel
            packed = Packed("nhwc", np.empty(0, L.dtype))
        else:
            packed = packed_like(L, L.dtype)
        launch = _bind_tiled(spec, packed, bias, one_shot=True) if dense else bind(spec, packed, bias)
    finally:
        _recording.biases = None

    def set_bias(b: np.ndarray) -> None:
        for bp, groups, per_group in made:
            bp[:, :per_group] = b.reshape(groups, per_group)

    if dense:
        def run_dense(x: np.ndarray, w: np.ndarray, out: np.ndarray, threads: int) -> None:
            launch(x, out, threads, w)

        return run_dense, set_bias

    # depthwise: one jitted call refills what the chosen kernel reads
    from .weight_pack import pack_depthwise

    taps, nl = L.kh * L.kw, blocking.lanes(L.dtype.itemsize)
    none, idx = np.empty(0, L.dtype), np.arange(taps + nl, dtype=np.int64)
    if family == "dwconv_small_nchw":  # reads by_lanes only
        head = (taps, none, packed.by_lanes, taps, nl, idx)
    elif packed.kind == "dw_nchw":
        head = (taps, packed.weights, none, 0, 0, idx)
    else:
        head = (taps, none, packed.weights, 1, packed.weights.shape[0] // taps, idx)

    def run_depthwise(x: np.ndarray, w: np.ndarray, out: np.ndarray, threads: int) -> None:
        pack_depthwise(w.reshape(-1), *head)
        launch(x, out, threads)

    return run_depthwise, set_bias


def _threads_args(spec: ConvSpec) -> Callable[[int, Callable[[int], tuple]], tuple]:
    """``threads_args(threads, tail)``: (useful threads, ``tail(useful)``), cached per thread count."""
    per_threads: Dict[int, tuple] = {}  # threads -> (useful threads, the args that depend on them)

    def threads_args(threads: int, tail: Callable[[int], tuple]) -> tuple:
        got = per_threads.get(threads)
        if got is None:
            useful = useful_threads(spec, threads)
            got = per_threads[threads] = (useful, tail(useful))
        return got

    return threads_args


def _bind_dw_small(spec: ConvSpec, packed: Packed, bias: Optional[np.ndarray]) -> Launch:
    from .depthwise_small import dw_nchw_small

    L = spec.layer
    threads_args = _threads_args(spec)
    (sh, sw), (dh, dw) = L.stride, L.dilation
    hp = (spec.oh - 1) * sh + (L.kh - 1) * dh + 1  # the padded input window the outputs read
    wp = (spec.ow - 1) * sw + (L.kw - 1) * dw + 1
    nl = blocking.lanes(L.dtype.itemsize)
    pix2tile, ident, toff = _small_tables(spec.h, spec.w, spec.pad_top, spec.pad_left, hp, wp, L.kh, L.kw,
                                          dh, dw, nl)
    bp = _padded_bias(bias, 1, L.cout, nl, L.dtype)
    row3 = L.kh if (L.kw, sw, dw) == (3, 1, 1) else 0
    mid = (spec.h, spec.w, L.cout, spec.n, sh, sw, hp, wp, pix2tile, ident, toff, row3, packed.by_lanes, bp)
    tail = (spec.oh, spec.ow, int(L.relu))

    def launch_dw_small(x: np.ndarray, out: np.ndarray, threads: int) -> None:
        useful, _ = threads_args(threads, lambda t: ())
        workers.run(dw_nchw_small, (x.reshape(-1),) + mid + (out.reshape(-1),) + tail, useful)

    return launch_dw_small


def _bind_dw_nchw(spec: ConvSpec, packed: Packed, bias: Optional[np.ndarray]) -> Launch:
    from .depthwise import dw_nchw  # pads each channel plane itself, in a task-local buffer

    L = spec.layer
    threads_args = _threads_args(spec)
    geo = geometry(spec)
    b = _padded_bias(bias, 1, L.cout, 1, L.dtype)  # a copy: a one-shot plan refills it (set_bias)
    mid = (spec.h, spec.w, geo.phase_py, geo.phase_px, geo.hq1, geo.wq, L.stride[0], L.stride[1],
           spec.pad_top, spec.pad_left, geo.tapoff, packed.weights, b)
    tail = (spec.n * L.cout, L.cout, spec.oh, spec.ow, int(L.relu))

    def launch_dw_nchw(x: np.ndarray, out: np.ndarray, threads: int) -> None:
        useful, _ = threads_args(threads, lambda t: ())
        workers.run(dw_nchw, (x.reshape(-1),) + mid + (out.reshape(-1),) + tail + (useful,), useful)

    return launch_dw_nchw


def _bind_tiled(spec: ConvSpec, packed: Packed, bias: Optional[np.ndarray],
                one_shot: bool = False) -> Launch:
    """The dense NCHW / NHWC and the NHWC depthwise kernels: one launcher, kernel-specific arguments.

    ``one_shot`` (the dense kernels, ``bind_one_shot``): each launch brings its weights, ``launch(x, out,
    threads, w)``: the NCHW kernel reads them in place as it reads a layer's (each group's last partial
    channel tile copied into ``packed.by_lanes``, the launcher's own), the NHWC kernel packs them block by
    block inside its loops; the launcher keeps its input copy (used by one Python thread only)."""
    L = spec.layer
    none = np.empty(0, L.dtype)
    item = L.dtype.itemsize
    threads_args = _threads_args(spec)
    geo = geometry(spec)
    relu = int(L.relu)
    taps = L.kh * L.kw
    if packed.kind == "nchw":
        from .dense_nchw import MR, conv_nchw

        nr = blocking.tile_cols(item)
        co_tiles = -(-L.cout_g // MR)
        q_tiles = -(-geo.qtotal // nr)
        # tiny maps (7x7: 2 position tiles) are split along the channels only: a task per position
        # tile would stream each weight block (up to 4 MB a layer, beyond L2) once per tile
        q_split = 1 if q_tiles <= blocking.JOBS_PER_THREAD else q_tiles
        bp = _padded_bias(bias, L.groups, L.cout_g, MR, L.dtype)
        koff = (np.arange(L.cin_g, dtype=np.int64)[:, None] * geo.plane + geo.tapoff[None, :]).ravel()
        kernel = conv_nchw
        mid = (geo.plane, koff, geo.wq, geo.qtotal)
        weights = (packed.weights, packed.by_lanes, bp)

        def weights_of(w: np.ndarray, useful: int, tail: tuple) -> Tuple[tuple, tuple]:
            _fill_tail(packed.by_lanes, w.reshape(L.groups, L.cout_g, L.cin_g, taps))  # the launcher's own copy
            return (w.reshape(-1), packed.by_lanes, bp), ()
        kc = blocking.k_chunk(nr * item)
        # with at most IN_PLACE_CO_TILES channel tiles a packed input panel is reused too little: cheaper to read
        # the input where it lies (docs/numba.md, "Dense NCHW")
        in_place = int(L.cin_g * taps <= kc and co_tiles <= IN_PLACE_CO_TILES)
        # in place there is no packed panel to keep in L1: blocks of up to 64 position tiles (their input
        # re-read by the block's channel tiles from L2) gave 2 threads 0.16 -> 0.11 ms on mb2_pw_32_16_112
        max_tiles = 16
        if in_place:
            max_tiles = max(16, min(64, (blocking.cache_sizes()[2] // 4) // (L.cin_g * taps * nr * item)))

        def tail_for(t: int) -> tuple:  # the task split depends on the thread count
            co_block = blocking.panel_block(L.cin_g * taps * MR * item, co_tiles, spec.n * L.groups * q_split, t)
            other = spec.n * L.groups * -(-co_tiles // co_block)
            return (spec.n, L.cin, L.cout, L.groups, spec.oh, spec.ow, relu, co_block,
                    blocking.split_tiles(q_tiles, other, t, max_tiles), kc, in_place)
    elif packed.kind == "nhwc":
        from .dense_nhwc import MR, conv_nhwc

        nr = blocking.tile_cols(item)
        co_tiles = -(-L.cout_g // nr)
        q_tiles = -(-geo.qtotal // MR)
        bp = _padded_bias(bias, L.groups, L.cout_g, nr, L.dtype)
        kernel = conv_nhwc
        mid = (geo.plane, geo.tapoff, geo.wq, geo.qtotal)
        weights = (packed.weights, bp)
        idx = step_index(L.cin_g, taps, True, blocking.lanes(item)) if one_shot else np.zeros(0, np.int64)
        post = (none, idx, np.empty((1, 0), L.dtype))
        bufs: Dict[int, np.ndarray] = {}  # per thread count: a row of co_block packed panels per worker

        def weights_of(w: np.ndarray, useful: int, tail: tuple) -> Tuple[tuple, tuple]:
            got = bufs.get(useful)
            if got is None:
                got = bufs[useful] = np.empty((useful, tail[-2] * L.cin_g * taps * nr), L.dtype)
            return weights, (w.reshape(-1), idx, got)

        def tail_for(t: int) -> tuple:  # the task split depends on the thread count
            co_block = blocking.panel_block(L.cin_g * taps * nr * item, co_tiles, spec.n * L.groups * q_tiles, t)
            other = spec.n * L.groups * -(-co_tiles // co_block)
            return (spec.n, L.cin, L.cout, L.groups, spec.oh, spec.ow, relu, co_block,
                    blocking.split_tiles(q_tiles, other, t, max_tiles=32))
    else:
        from .depthwise import NV, dw_nhwc

        q_tiles = -(-geo.qtotal // NV)
        b = _padded_bias(bias, 1, L.cout, blocking.lanes(item), L.dtype)
        kernel = dw_nhwc
        mid = (geo.plane, geo.tapoff, geo.wq, geo.qtotal)
        weights = (packed.weights, b)

        def tail_for(t: int) -> tuple:
            return (spec.n, L.cout, spec.oh, spec.ow, relu, blocking.split_tiles(q_tiles, spec.n, t, max_tiles=64))

    prepare = _preparer(spec, geo, keep=one_shot)

    if packed.kind != "nhwc":
        post = ()

    def launch(x: np.ndarray, out: np.ndarray, threads: int, w: Optional[np.ndarray] = None) -> None:
        useful, tail = threads_args(threads, tail_for)
        ws, more = (weights, post) if w is None else weights_of(w, useful, tail)
        workers.run(kernel, (prepare(x),) + mid + ws + (out.reshape(-1),) + tail + more, useful)

    return launch


_BINDERS: Dict[str, Callable[[ConvSpec, Packed, Optional[np.ndarray]], Launch]] = {
    "dwconv_small_nchw": _bind_dw_small,
    "dwconv_nchw": _bind_dw_nchw,
    "dense_nchw": _bind_tiled,
    "dense_nhwc": _bind_tiled,
    "dwconv_nhwc": _bind_tiled,
}
