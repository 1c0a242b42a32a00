"""Convolutions and matrix products: Conv and ConvTranspose on fastpoint's kernels, Gemm, MatMul.

A Conv whose weight is an initializer gets one prepacked :class:`fastpoint.Conv2d` per node (per
symmetric padding, the only thing that can change with the input shape under ``auto_pad``); a
following Relu is fused into it by the plan and a BatchNormalization folded into its weight and bias.
ONNX's asymmetric pads become a zero pad of the rows/columns that the symmetric part leaves over.
1-d convolutions run as 2-d ones of height 1.
"""

from __future__ import annotations

import math
import threading
import weakref
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..api import Conv2d
from ..backends.c import _aligned_bytes
from ..core.spec import check_algorithm, prepare_input
from ..core.winograd import winograd_pays
from . import wire
from .pages import fresh_bytes
from .registry import Op, deliver, register


class PackBlocks:
    """One network's packed convolution weights, carved out of a few blocks of 4 KiB pages.

    A layer's packed weights are written once, on its first call, into fresh memory. As NumPy arrays of
    their own, those of 4 MiB or more would get transparent huge pages and the others be faulted in
    page by page; both cost more than the packing's copy on a VM (:mod:`.pages`). So the first block
    is ``reserve`` bytes (what the network's convolutions are expected to pack into), populated in one
    call when the first layer packs; what does not fit goes to further blocks of :data:`BLOCK` bytes
    faulted in as they are written (their untouched tails cost no memory), a layer as large as a block
    to one of its own, and one below :data:`SMALL` to the heap, which reuses memory the load freed.
    """

    BLOCK = 32 << 20
    SMALL = 256 << 10  # smaller packings come from the heap
    ALIGN = 64

    def __init__(self, reserve: int = 0) -> None:
        self._lock = threading.Lock()
        self._block: Optional[np.ndarray] = None
        self._used = 0
        self._reserve = reserve

    def __getstate__(self) -> dict:
        # a pickled network (dask sends it to workers) carries its layers' packed arrays; an unpickled
        # one gets fresh blocks for what it packs next, not a lock or this process's mappings
        return {"reserve": self._reserve}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["reserve"])

    @classmethod
    def for_graph(cls, graph) -> PackBlocks:
        """Blocks for ``graph``'s convolutions: the first one sized by their initializer weights of
        :data:`SMALL` bytes and more, plus 2 % for the kernels' panels rounding up the output channels
        (measured: fcn_resnet50 1.2 %, BasicUNet 0 %, lraspp 6 %, whose excess goes to a further block):
        the reserve is resident once populated, so it is kept tight."""
        total = sum(-(-n.op.weight.nbytes * 102 // 100 // cls.ALIGN) * cls.ALIGN for n in graph.nodes
                    if isinstance(n.op, Conv) and n.op.weight is not None and n.op.weight.nbytes >= cls.SMALL)
        return cls(total)

    def take(self, nbytes: int) -> np.ndarray:
        """``nbytes`` 64-byte aligned bytes that no other caller gets."""
        size = -(-nbytes // self.ALIGN) * self.ALIGN
        if size < self.SMALL:
            return _aligned_bytes(nbytes)
        with self._lock:
            if self._block is None and self._reserve >= size:
                self._block, self._used = fresh_bytes(self._reserve, populate=True), 0
                self._reserve = 0
            if self._block is None or self._used + size > self._block.nbytes:
                if size >= self.BLOCK:
                    return fresh_bytes(nbytes)
                self._block, self._used = fresh_bytes(self.BLOCK), 0
            buf = self._block[self._used:self._used + nbytes]
            self._used += size
        return buf


class LoadSource:
    """The convolution weights a load left in the file (graph.read_deferred), read once each by load_onnx
    as it packs: into one scratch buffer reused layer after layer (in cache, on pages already faulted in,
    where a kept copy of every weight would be fresh memory written once), the folded BatchNormalization
    applied there, then packed. The packed form is then the weights' only copy (:func:`weights_from_packed`)."""

    def __init__(self, deferred: wire.Deferred) -> None:
        self.deferred = deferred
        self._scratch: Optional[np.ndarray] = None

    def read(self, op: ConvBase, own: bool) -> np.ndarray:
        """``op``'s weights (folded), in the scratch buffer, or in an array of its own (``own``)."""
        from .graph import fold_weight

        shape, dtype = op.weight.shape, op.weight.dtype
        if own:
            w = np.empty(shape, dtype)
        else:
            nbytes = op.weight.nbytes
            if self._scratch is None or self._scratch.nbytes < nbytes:
                largest = max(p.nbytes for p in self.deferred.payloads.values())
                self._scratch = _aligned_bytes(max(largest, nbytes))
            w = self._scratch[:nbytes].view(dtype).reshape(shape)
        self.deferred.read_into(op.source[1], w)
        return w if op.fold_scale is None else fold_weight(w, op.fold_scale, w)

    def finish(self, graph) -> None:
        """The end of the load: every node whose weights no packed layer holds in a form they can be
        derived from (none packed, Winograd's transformed weights) reads them into an array of its own;
        the file is closed."""
        try:
            for node in graph.nodes if graph is not None else ():
                op = node.op
                if isinstance(op, Conv) and op.source is not None:
                    packs = [(b, spec) for layer in op._layers.values() for (b, _), (spec, *_) in layer._packed.items()]
                    if not packs or any(b != "c" or spec.algorithm == "winograd" for b, spec in packs):
                        op.weight_values()
                    op.source = None
                    if not isinstance(op.weight, wire.StandIn):
                        op.fold_scale = None  # (folded into it)
        finally:
            self.deferred.close()


def weights_from_packed(spec, packed, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The weights a C-backend packing holds, bit for bit, from that packing alone.

    Every packing but Winograd's is a header and the weights moved (panels, zero-padded lanes): so the
    layer is packed again three times, from zeros and from each weight's index (its low and high 12 bits
    plus one: exact in float32), and each packed slot whose bytes differ from the zero packing's holds
    the weight whose index it shows. Anything else (a value that is no index, an index missing, two slots
    of one weight that disagree) raises: the weights are then not in this form (never a wrong answer).
    """
    from ..backends.c import CBackend, _lib

    dtype = np.dtype(dtype)
    if packed.isa != int(_lib.fp_isa()):
        raise RuntimeError("these packed weights are another ISA's: their layout is not this machine's")
    n = math.prod(shape)
    uint = np.uint32 if dtype.itemsize == 4 else np.uint64
    size = packed.buffer.nbytes // dtype.itemsize * dtype.itemsize

    def pack(values: np.ndarray) -> np.ndarray:
        buf = CBackend().prepack(spec, np.ascontiguousarray(values.reshape(shape), dtype)).buffer
        return buf[:size].view(uint)

    index = np.arange(n, dtype=np.int64)
    zero = pack(np.zeros(n, dtype))
    lo, hi = pack((index & 4095) + 1), pack((index >> 12) + 1)
    slots = lo != zero
    lo_v, hi_v = lo[slots].view(dtype), hi[slots].view(dtype)
    held = packed.buffer[:size].view(uint)[slots]
    ok = (np.array_equal(slots, hi != zero) and np.all(lo_v == np.round(lo_v)) and np.all(hi_v == np.round(hi_v))
          and lo_v.size and lo_v.min() >= 1 and lo_v.max() <= 4096 and hi_v.min() >= 1)
    if ok:
        at = (hi_v.astype(np.int64) - 1) * 4096 + (lo_v.astype(np.int64) - 1)
        ok = at.max() < n and np.all(np.bincount(at, minlength=n) > 0)
    if ok:
        out = np.empty(n, uint)
        out[at] = held
        ok = np.array_equal(out[at], held)  # (a weight in two slots: the same bytes in both)
    if not ok:
        raise RuntimeError(f"the packed weights of a {spec.algorithm} layer are not the weights moved: "
                           "they cannot be read back")
    return out.view(dtype).reshape(shape)


class _BlockPacking:
    """The C backend with its packed weights placed in a network's :class:`PackBlocks` (or, without blocks,
    in arrays of their own); with ``spec``, packed for that call shape's map: a Winograd layer's U of the
    tile size the map runs only (csrc/winograd/winograd.h), not those of both."""

    def __init__(self, backend, blocks: Optional[PackBlocks], spec=None) -> None:
        self._backend, self._blocks, self._spec = backend, blocks, spec
        if spec is not None:  # Conv2d keeps one packing per backend name and dtype: here one per tile size
            self.name = f"{backend.name}:{backend.kernel_name(spec)}"

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def prepack(self, layer, weight):
        alloc = self._blocks.take if self._blocks is not None else _aligned_bytes
        return self._backend.prepack(layer, weight, alloc=alloc, spec=self._spec)


class NodeConv2d(Conv2d):
    """A node's layer: its weight array belongs to the network and never changes, so no snapshot copy;
    on the C backend its packed weights go to the network's blocks (:class:`PackBlocks`)."""

    _snapshot = False
    pack_blocks: Optional[PackBlocks] = None
    _map: Optional[Tuple] = None  # (input shape, dtype) of the plan being made, for a Winograd layer
    _map_lock = threading.Lock()  # (one for all layers: a layer's lock would not pickle)
    #: the node's weights, 4-d, when ``_weight`` is a stand-in (:class:`.wire.StandIn`): ``(array,
    #: transient)``, transient while the load reads them into its scratch (a weak reference to the
    #: node's Conv.layer_weights: the node holds its layers, a layer must not hold it back)
    _weights_of: Optional[weakref.WeakMethod] = None

    def _weights(self) -> Tuple[np.ndarray, bool]:
        of = self._weights_of() if self._weights_of is not None else None
        if of is None:
            raise RuntimeError("this layer's weights were left in the model file and its node is gone")
        return of()

    def _prepared(self, backend, dtype: np.dtype):
        if (backend.name, dtype) in self._packed or not isinstance(self._weight, wire.StandIn):
            return super()._prepared(backend, dtype)
        stand, (self._weight, transient) = self._weight, self._weights()
        try:
            return super()._prepared(backend, dtype)  # packed from the real weights
        finally:
            if transient:  # the load's scratch, the next layer's: the packed form holds them now
                self._weight = stand

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        if isinstance(self._weight, wire.StandIn):
            state["_weight"] = self._weights()[0]  # a pickle carries the weights, not the packing's ISA
        state.pop("_weights_of", None)
        return state

    def _get_backend(self):
        backend = super()._get_backend()
        if backend.name != "c" or (self.pack_blocks is None and self._map is None):
            return backend
        spec = None if self._map is None else self._make_spec(self._layer.with_dtype(self._map[1]), self._map[0])
        return _BlockPacking(backend, self.pack_blocks, spec)

    def _new_plan(self, x4: np.ndarray, batched: bool, user_shape):
        """A Winograd layer's plan packs, on the first call of a shape, the U of the tile size that shape's
        map runs (4 x the weights for F(4x4), 1.8 x for F(2x2)), once per tile size used; one lock keeps
        concurrent first calls from packing twice."""
        if self._layer.algorithm != "winograd":
            return super()._new_plan(x4, batched, user_shape)
        with self._map_lock:
            self._map = (x4.shape, x4.dtype)
            try:
                return super()._new_plan(x4, batched, user_shape)
            finally:
                self._map = None

    def kept_plan(self, x: np.ndarray):
        """The kept call plan for inputs like ``x`` (checked as a call's input; made, and the weights
        packed, on the first such call), without a call: for a runner bound to the plan's arena."""
        x4, batched = prepare_input(x, self._layer)
        user_shape = x4.shape if batched else x4.shape[1:]
        return self._plans.get((user_shape, x4.dtype)) or self._new_plan(x4, batched, user_shape)


def is_nhwc(a: np.ndarray) -> bool:
    """A 4-d array that is NHWC in memory (and not NCHW): what the plan gives in an NHWC network."""
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


def _nhwc_copy(x4: np.ndarray) -> np.ndarray:
    """``x4`` (NCHW shape) as a C-contiguous NHWC array: itself, or one threaded C conversion (a graph input)."""
    xt = x4.transpose(0, 2, 3, 1)
    if xt.flags.c_contiguous:
        return xt
    from ..ops import _c

    y = np.empty(xt.shape, x4.dtype)
    return y if _c.to_layout(x4, y.transpose(0, 3, 1, 2)) else np.ascontiguousarray(xt)


def _conv_out(size: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return (size + pb + pe - ((k - 1) * d + 1)) // s + 1


def auto_pads(mode: str, sizes, kernel, strides, dilations) -> List[int]:
    """ONNX ``auto_pad`` SAME_UPPER / SAME_LOWER: output = ceil(input / stride); begins then ends."""
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


class ConvBase(Op):
    """Attribute handling shared by Conv and ConvTranspose."""

    attributes = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None,
                  "strides": None}
    writes_out = True

    def setup(self):
        if self.attrs["auto_pad"] not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
            raise self.unsupported(f"auto_pad={self.attrs['auto_pad']!r}")
        self.activation: Optional[str] = None  # a fused activation (fastpoint's name; fusion.py)
        self.act_params: Dict = {}  # its parameters (alpha, beta, min, max, slope)
        self.residual = False  # input 3 is a fused residual: y = act(conv(x) + input 3)
        self.unfused: List = []  # the fused ops, (op, constant inputs), to run them when the fusion cannot
        self.weight: Optional[np.ndarray] = None  # an initializer (prepacked), else an input at run time
        self.bias: Optional[np.ndarray] = None
        self.backend = "auto"  # the fastpoint backend; set by load_onnx
        self.pack_blocks: Optional[PackBlocks] = None  # where the C backend packs (one per network; load_onnx)
        # a weight left in the file (weight a wire.StandIn): where the load reads it from, (LoadSource,
        # initializer name), until the end of load_onnx; the folded BatchNormalization's scale (graph.py)
        self.source: Optional[Tuple[LoadSource, str]] = None
        self.fold_scale: Optional[np.ndarray] = None

    def spatial_rank(self, w_shape) -> int:
        rank = len(w_shape) - 2
        if rank not in (1, 2):
            raise self.unsupported(f"{rank}-d convolution (weight shape {tuple(w_shape)})")
        return rank

    def geometry(self, rank: int):
        a = self.attrs
        strides = list(a["strides"] or [1] * rank)
        dilations = list(a["dilations"] or [1] * rank)
        return strides, dilations

    def bind_constants(self, consts: Dict[int, np.ndarray]) -> None:
        if 1 in consts:
            self.weight = np.asanyarray(consts[1])  # (a wire.StandIn stays one)
            self.spatial_rank(self.weight.shape)
        if 2 in consts:
            self.bias = np.asarray(consts[2])

    def weight_values(self) -> Optional[np.ndarray]:
        """The weight's values (``weight`` may be a stand-in for one left in the file: wire.StandIn):
        read from the file now and kept, during the load; after it, derived from a packed layer's form
        (the packing is the weights' only copy; the file, which may have changed, is never read again)."""
        w = self.weight
        if not isinstance(w, wire.StandIn):
            return w
        if self.source is not None:
            self.weight = self.source[0].read(self, own=True)
        else:
            self.weight = self._weights_from_layers()
        return self.weight

    def _weights_from_layers(self) -> np.ndarray:
        for layer in self._layers.values():
            for (backend, dtype), (spec, packed, _, _) in layer._packed.items():
                if backend == "c" and dtype == self.weight.dtype and spec.algorithm != "winograd":
                    return weights_from_packed(spec, packed, layer._weight.shape, dtype).reshape(self.weight.shape)
        raise RuntimeError(f"{self.op_type} node {self.name!r}: its weights were left in the file and no "
                           "packed layer holds them")  # (load_onnx reads them for every node it packs none of)

    def layer_weights(self) -> Tuple[np.ndarray, bool]:
        """:attr:`NodeConv2d._weights`: the 4-d weights and whether they are transient (the load's scratch)."""
        if isinstance(self.weight, wire.StandIn) and self.source is not None:
            w, transient = self.source[0].read(self, own=False), True
        else:
            w, transient = self.weight_values(), False
        return (w if w.ndim == 4 else w[:, :, None, :]), transient

    def __getstate__(self) -> dict:
        self.weight_values()  # (a stand-in's values: a pickle carries the weights themselves)
        return self.__dict__

    def _params(self, inputs):
        w = self.weight_values() if self.weight is not None else inputs[1]
        b = self.bias if self.bias is not None else (inputs[2] if len(inputs) > 2 else None)
        return w, b


@register("Conv")
class Conv(ConvBase):
    def setup(self):
        super().setup()
        self._layers: Dict[Tuple[int, int, str], object] = {}
        self.stem_shapes: set = set()  # input shapes a plan runs on the stem loop (bind_feed)
        self.algorithm = "auto"  # load_onnx(algorithm=...): "winograd" where it applies (_algorithm)

    def _algorithm(self, w4, strides, dilations, layout: str) -> str:
        if self.algorithm != "winograd":
            return self.algorithm
        try:  # (dilated layers too where the layout is NHWC)
            check_algorithm("winograd", w4.shape[2], w4.shape[3], tuple(strides), tuple(dilations),
                            self.attrs["group"], layout)
        except ValueError:  # not a 3x3 stride-1 ungrouped layer: the default kernels
            return "auto"
        # only where it is faster than the direct kernel (core/winograd.py: input channels >= a vector)
        return "winograd" if winograd_pays(w4.shape[1]) else "auto"

    def _pads(self, x_shape, w_shape) -> List[int]:
        rank = len(w_shape) - 2
        kernel = list(w_shape[2:])
        strides, dilations = self.geometry(rank)
        mode = self.attrs["auto_pad"]
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            return auto_pads(mode, x_shape[2:], kernel, strides, dilations)
        if mode == "VALID" or self.attrs["pads"] is None:
            return [0] * (2 * rank)
        return list(self.attrs["pads"])

    def infer(self, shapes, dtypes, values):
        w_shape = self.weight.shape if self.weight is not None else shapes[1]
        if shapes[0] is None or w_shape is None:
            return None
        self.spatial_rank(w_shape)
        shape = self._conv_shape(shapes[0], w_shape)
        if self.residual:  # the fused Add's result: the two shapes broadcast
            if shapes[3] is None:
                return None
            shape = tuple(np.broadcast_shapes(shape, shapes[3]))
        return [(shape, dtypes[0])]

    def _as_2d(self, x, w, pads):
        """1-d convolution as a 2-d one of height 1; pads as (top, left, bottom, right)."""
        strides, dilations = self.geometry(w.ndim - 2)
        if w.ndim == 3:
            return (x[:, :, None, :], w[:, :, None, :], [0, pads[0], 0, pads[1]], [1] + strides,
                    [1] + dilations)
        return x, w, pads, strides, dilations

    def _epilogue(self, channels: int) -> Dict:
        """The ``activation=`` of fastpoint's conv for the fused activation (fusion.py names them so)."""
        if self.activation is None:
            return {}
        p = self.act_params
        if self.activation == "prelu":
            from .fusion import prelu_slope

            return {"activation": ("prelu", prelu_slope(p["slope"], channels))}
        if self.activation == "clip":
            return {"activation": ("clip", p["min"], p["max"])}
        if self.activation == "leaky_relu":
            return {"activation": ("leaky_relu", p["alpha"])}
        if self.activation == "hardsigmoid":
            return {"activation": ("hardsigmoid", p["alpha"], p["beta"])}
        return {"activation": self.activation}  # relu, hardswish, sigmoid, tanh

    def _layer(self, w, b, sym, strides, dilations, layout: str, fused: bool = True):
        import fastpoint as fp

        w4 = w if w.ndim == 4 else w[:, :, None, :]
        kw = self._epilogue(w.shape[0]) if fused else {}
        if self.weight is None:  # weight given at run time: a one-call convolution
            return lambda x, out, **r: fp.conv2d(x, w4, b, strides, sym, dilations, self.attrs["group"], **kw,
                                                 layout=layout, backend=self.backend, out=out,
                                                 algorithm=self._algorithm(w4, strides, dilations, layout), **r)
        layer = self._node_layer(w4, b, sym, strides, dilations, layout, fused, kw)
        return lambda x, out, **r: layer(x, out=out, **r)

    def _node_layer(self, w4, b, sym, strides, dilations, layout: str, fused: bool, kw: Dict) -> NodeConv2d:
        """The prepacked layer of this node for a padding, layout and fusion (made on first use, kept)."""
        key = (tuple(sym), layout, fused)
        layer = self._layers.get(key)
        if layer is None:
            if isinstance(w4, wire.StandIn) and self.source is None:  # after the load: from a packed layer
                w4 = self.layer_weights()[0]
            layer = NodeConv2d(w4, b, strides, sym, dilations, self.attrs["group"], **kw, layout=layout,
                               backend=self.backend, algorithm=self._algorithm(w4, strides, dilations, layout))
            layer.pack_blocks = self.pack_blocks
            layer._weights_of = weakref.WeakMethod(self.layer_weights)  # (a stand-in w4: read at its packing)
            self._layers[key] = layer
        return layer

    def bind(self, inputs, outs):
        """A runner of this node on fixed arrays (the plan's arena views: ``Plan._program``), or None.

        For a 2-d convolution with an initializer weight, symmetric pads and the output (and residual)
        in one memory order, it resolves once what ``run`` works out per call (pads, layout, the
        prepacked layer, the NHWC views), makes the layer's kept call plan on its first call, and from
        then on calls the plan's bound C runner directly: the plan's buffers are contiguous, aligned and
        never overlap an input (the arena's rule), which is all that the layer's per-call checks test.
        """
        x, out = inputs[0], outs[0]
        w, b = self.weight, self.bias
        if w is None or w.ndim != 4 or x.ndim != 4 or x.dtype not in (np.float32, np.float64):
            return None
        pads = self._pads(x.shape, w.shape)
        shape = self._conv_shape(x.shape, w.shape, pads)
        res = inputs[3] if self.residual else None
        if (pads[:2] != pads[2:] or out.shape != shape or out.dtype != x.dtype
                or (res is not None and (res.shape != shape or res.dtype != x.dtype))):
            return None
        nhwc = is_nhwc(out) or x.shape[2:] == shape[2:] == (1, 1)
        strides, dilations = self.geometry(2)
        layer = self._node_layer(w, b, pads[:2], strides, dilations, "NHWC" if nhwc else "NCHW", True,
                                 self._epilogue(w.shape[0]))
        xk, yk, rk = (a if a is None or not nhwc else a.transpose(0, 2, 3, 1) for a in (x, out, res))
        if not all(a is None or (a.flags.c_contiguous and a.flags.aligned) for a in (xk, yk, rk)):
            return None
        kw = {} if rk is None else {"residual": rk}

        def first() -> Callable[[], None]:
            # the layer's kept plan, made now (the arrays passed the checks above, which are those of
            # the layer's repeat calls: no full call's exact overlap checks needed, first call or not)
            plan = layer.kept_plan(xk)
            if plan.bad_taps is not None or plan.spec.n == 0:
                # non-finite weights (the padding fix-up), batch 0: the full call
                return partial(layer, xk, out=yk, **kw)
            if rk is None:
                return partial(plan.run, xk, yk)
            # the residual is a fixed array too: its epilogue made once (backends/c.py bind_residual)
            bound = plan.bind_residual(rk) if plan.bind_residual is not None else None
            return partial(bound, xk, yk) if bound is not None else partial(plan.run_residual, xk, yk, rk)

        # a weight still in the file: packed now, during load_onnx (the file is not read after it)
        fast = first() if self.source is not None else None

        def runner() -> None:
            nonlocal fast
            if fast is None:
                fast = first()
            fast()

        return runner

    def bind_feed(self, x_shape, x_dtype, out):
        """A runner ``runner(x) -> bool`` of this node reading a graph input ``x`` (NCHW, ``x_shape``) straight
        into ``out`` (the plan's NHWC buffer) with csrc/ops' stem loop (``_c.prepare_conv_stem``: few input
        channels, no NHWC copy of the image first); it returns False, having written nothing, for an input it
        does not take (not contiguous, overlapping ``out``). None where the loop does not apply: the plan
        then stages the input (``Plan._stage_feed``)."""
        from ..ops import _c

        w, b = self.weight, self.bias
        if (w is None or w.ndim != 4 or len(x_shape) != 4 or self.residual or self.attrs["group"] != 1
                or x_dtype != np.float32 or w.dtype != np.float32 or not is_nhwc(out)):
            return None
        pads = self._pads(x_shape, w.shape)
        if pads[:2] != pads[2:] or out.shape != self._conv_shape(x_shape, w.shape, pads):
            return None
        strides, dilations = self.geometry(2)
        spec = self._node_layer(w, b, pads[:2], strides, dilations, "NHWC", True, self._epilogue(w.shape[0]))._layer
        from ..backends.c import _epilogue

        w = self.layer_weights()[0]  # (``weight`` may be a stand-in left in the file; the loop copies them now)
        call = _c.prepare_conv_stem(tuple(x_shape), w, b, pads[:2], strides, dilations, spec.relu,
                                    _epilogue(spec, None) if spec.act is not None else None)
        if call is None:
            return None
        y, shape = out.transpose(0, 2, 3, 1), tuple(x_shape)
        self.stem_shapes.add(shape)  # for kernel(): the profile names the loop that runs

        def runner(x: np.ndarray) -> bool:
            if (x.shape != shape or x.dtype != np.float32 or not x.flags.c_contiguous or not x.flags.aligned
                    or np.may_share_memory(x, y)):
                return False
            call(x, y)
            return True

        return runner

    def run(self, inputs, outs):
        x = inputs[0]
        w, b = self._params(inputs)
        if x.dtype not in (np.float32, np.float64):
            raise self.unsupported(f"input dtype {x.dtype}")
        pads = self._pads(x.shape, w.shape)
        x4, w4, pads4, strides, dilations = self._as_2d(x, w, pads)
        sym = [min(pads4[0], pads4[2]), min(pads4[1], pads4[3])]
        extra = [(pads4[0] - sym[0], pads4[2] - sym[0]), (pads4[1] - sym[1], pads4[3] - sym[1])]
        if any(e for pair in extra for e in pair):
            x4 = np.pad(x4, [(0, 0), (0, 0)] + extra)
        shape = self._conv_shape(x.shape, w.shape)
        res = inputs[3] if self.residual else None
        out = outs[0] if outs else None
        if res is not None and res.shape != shape:  # the Add broadcasts: run the fused ops one by one
            return self._run_unfused(x4, w, b, sym, strides, dilations, res, out)
        # the plan's buffers say the layout; a 1x1 image is the same memory in both, and NHWC's packed
        # weights are half the size of NCHW's for these (squeeze-excitation) GEMMs and ran even or faster
        nhwc = w.ndim == 4 and (is_nhwc(out if out is not None else x) or x4.shape[2:] == shape[2:] == (1, 1))
        layer = self._layer(w, b, sym, strides, dilations, "NHWC" if nhwc else "NCHW")
        extra_kw = {}
        if nhwc:  # the NCHW arrays the plan passes are NHWC in memory where the layout pass made them so
            xk = _nhwc_copy(x4)
            target = out.transpose(0, 2, 3, 1) if out is not None else None
            if res is not None:
                extra_kw["residual"] = np.ascontiguousarray(res.transpose(0, 2, 3, 1))
        else:
            xk = np.ascontiguousarray(x4)
            target = out if out is None or w.ndim == 4 else out.reshape(out.shape[:2] + (1,) + out.shape[2:])
            if res is not None:
                r = np.ascontiguousarray(res)
                extra_kw["residual"] = r if w.ndim == 4 else r.reshape(r.shape[:2] + (1,) + r.shape[2:])
        if target is not None and target.flags.c_contiguous:
            layer(xk, target, **extra_kw)
            return [out]
        y = layer(xk, None, **extra_kw)  # no buffer, or one in the other layout: convert once
        y = y.transpose(0, 3, 1, 2) if nhwc else (y if w.ndim == 4 else y[:, :, 0, :])
        if out is None:
            return [y]
        np.copyto(out, y)
        return [out]

    def _conv_shape(self, x_shape, w_shape, pads=None):
        rank = len(w_shape) - 2
        pads = self._pads(x_shape, w_shape) if pads is None else pads
        strides, dilations = self.geometry(rank)
        spatial = tuple(_conv_out(x_shape[2 + i], w_shape[2 + i], strides[i], dilations[i], pads[i],
                                  pads[rank + i]) for i in range(rank))
        return (x_shape[0], w_shape[0]) + spatial

    def _run_unfused(self, x4, w, b, sym, strides, dilations, res, out):
        """The convolution without its epilogue, then each fused op on its own (NumPy broadcasting)."""
        y = self._layer(w, b, sym, strides, dilations, "NCHW", fused=False)(np.ascontiguousarray(x4), None)
        y = y if w.ndim == 4 else y[:, :, 0, :]
        for op, consts in self.unfused:
            args = [y, res] if consts is None else [y, *consts]
            y = op.run(args, None)[0]
        if out is None:
            return [y]
        np.copyto(out, y)
        return [out]

    def flops(self, in_shapes, out_shapes):
        w = self.weight.shape if self.weight is not None else in_shapes[1]
        return 2 * int(np.prod(out_shapes[0], dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))

    def kernel(self, in_shapes):
        from .kernels import conv_kernel_name

        if self.weight is None:
            return "fastpoint conv2d"
        if in_shapes[0] is not None and tuple(in_shapes[0]) in self.stem_shapes:
            return "fp_op_conv_stem_f32"
        return conv_kernel_name(self, in_shapes[0])


@register("ConvTranspose")
class ConvTranspose(ConvBase):
    """Transposed convolution on ``fastpoint.conv_transpose2d`` (padding cropped per side)."""

    attributes = {**ConvBase.attributes, "output_padding": None, "output_shape": None}

    def setup(self):
        super().setup()
        import fastpoint as fp

        if not hasattr(fp, "conv_transpose2d"):
            raise self.unsupported("ConvTranspose (this fastpoint build has no conv_transpose2d)")
        self._layers: Dict[Tuple, object] = {}

    def _geometry(self, x_shape, w_shape):
        rank = self.spatial_rank(w_shape)
        strides, dilations = self.geometry(rank)
        kernel = list(w_shape[2:])
        out_pad = list(self.attrs["output_padding"] or [0] * rank)
        full = [strides[i] * (x_shape[2 + i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
                for i in range(rank)]
        mode = self.attrs["auto_pad"]
        if self.attrs["output_shape"] is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
            # ONNX's reference: the total padding that gives output_shape (default input * stride);
            # SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the start, NOTSET all at the end
            target = (list(self.attrs["output_shape"])[-rank:] if self.attrs["output_shape"] is not None
                      else [x_shape[2 + i] * strides[i] for i in range(rank)])
            total = [f - t for f, t in zip(full, target)]
            if mode == "NOTSET":  # a target past the full result: the extra rows/columns are output padding
                out_pad = [p + max(-t, 0) for p, t in zip(out_pad, total)]
                full = [f + max(-t, 0) for f, t in zip(full, total)]
                total = [max(t, 0) for t in total]
            if any(t < 0 for t in total):
                raise self.unsupported(f"output_shape {target} larger than the full result {full}")
            if mode == "SAME_UPPER":
                begins = [t // 2 for t in total]
            elif mode == "SAME_LOWER":
                begins = [t - t // 2 for t in total]
            else:
                begins = [0] * rank
            pads = begins + [t - b for t, b in zip(total, begins)]
        elif mode == "VALID" or self.attrs["pads"] is None:
            pads = [0] * (2 * rank)
        else:
            pads = list(self.attrs["pads"])
        out = [full[i] - pads[i] - pads[rank + i] for i in range(rank)]
        return rank, strides, dilations, out_pad, pads, out

    def infer(self, shapes, dtypes, values):
        w_shape = self.weight.shape if self.weight is not None else shapes[1]
        if shapes[0] is None or w_shape is None:
            return None
        rank, _, _, _, _, out = self._geometry(shapes[0], w_shape)
        return [((shapes[0][0], w_shape[1] * self.attrs["group"]) + tuple(out), dtypes[0])]

    def run(self, inputs, outs):
        import fastpoint as fp

        x = inputs[0]
        w, b = self._params(inputs)
        rank, strides, dilations, out_pad, pads, _ = self._geometry(x.shape, w.shape)
        if rank == 1:
            x, w = x[:, :, None, :], w[:, :, None, :]
            strides, dilations, out_pad = [1] + strides, [1] + dilations, [0] + out_pad
            pads = [0, pads[0], 0, pads[1]]
        sym = [min(pads[0], pads[2]), min(pads[1], pads[3])]
        if any(p < 0 for p in pads) or sym != [pads[0], pads[1]] or sym != [pads[2], pads[3]]:
            sym = [0, 0]  # asymmetric or negative: the full result, cropped below
        out = outs[0] if outs else None
        nhwc = rank == 2 and is_nhwc(out if out is not None else x)
        layout = "NHWC" if nhwc else "NCHW"
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if nhwc else x)
        crop = sym == [0, 0] and any(pads)
        target = None if out is None or crop or rank == 1 else (out.transpose(0, 2, 3, 1) if nhwc else out)
        if target is not None and not target.flags.c_contiguous:
            target = None  # the plan's buffer is in the other layout: convert once below
        if self.weight is not None:  # an initializer: one prepacked layer per (padding, output padding, layout)
            key = (tuple(sym), tuple(out_pad), layout)
            layer = self._layers.get(key)
            if layer is None:
                layer = self._layers[key] = fp.ConvTranspose2d(w, b, strides, sym, out_pad, self.attrs["group"],
                                                               dilations, activation=self.activation,
                                                               layout=layout, backend=self.backend)
            y = layer(x, out=target)
        else:
            y = fp.conv_transpose2d(x, w, b, strides, sym, out_pad, self.attrs["group"], dilations,
                                    activation=self.activation, layout=layout, backend=self.backend, out=target)
        if target is not None:
            return [out]
        if nhwc:
            y = y.transpose(0, 3, 1, 2)
        if crop:
            h, wd = y.shape[2], y.shape[3]
            y = y[:, :, pads[0]:h - pads[2], pads[1]:wd - pads[3]]
        if rank == 1:
            y = y[:, :, 0, :]
        return deliver(y, outs)

    def flops(self, in_shapes, out_shapes):
        w = self.weight.shape if self.weight is not None else in_shapes[1]
        return 2 * int(np.prod(in_shapes[0], dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))

    def kernel(self, in_shapes):
        return "fastpoint conv_transpose2d"


@register("Gemm")
class Gemm(Op):
    """``alpha * A' @ B' + beta * C`` (A', B' optionally transposed), C broadcast to the result."""

    attributes = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, "broadcast": 0}  # broadcast: opset < 7
    writes_out = True

    def _ab(self, a, b):
        return (a.T if self.attrs["transA"] else a), (b.T if self.attrs["transB"] else b)

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or shapes[1] is None:
            return None
        m = shapes[0][1] if self.attrs["transA"] else shapes[0][0]
        n = shapes[1][0] if self.attrs["transB"] else shapes[1][1]
        return [((m, n), dtypes[0])]

    def run(self, inputs, outs):
        a, b = self._ab(inputs[0], inputs[1])
        out = outs[0] if outs else np.empty((a.shape[0], b.shape[1]), inputs[0].dtype)
        np.matmul(a, b, out=out)
        if self.attrs["alpha"] != 1.0:
            out *= out.dtype.type(self.attrs["alpha"])
        if len(inputs) > 2 and inputs[2] is not None:
            c = inputs[2]
            out += c if self.attrs["beta"] == 1.0 else c * c.dtype.type(self.attrs["beta"])
        return [out]

    def flops(self, in_shapes, out_shapes):
        k = in_shapes[0][0] if self.attrs["transA"] else in_shapes[0][1]
        return 2 * int(np.prod(out_shapes[0], dtype=np.int64)) * k


@register("MatMul")
class MatMul(Op):
    """NumPy ``matmul`` semantics (which ONNX's MatMul follows, 1-d operands included)."""

    writes_out = True

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or shapes[1] is None:
            return None
        a, b = shapes
        a2 = (1,) + a if len(a) == 1 else a
        b2 = b + (1,) if len(b) == 1 else b
        batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
        out = batch + (a2[-2], b2[-1])
        if len(a) == 1:
            out = out[:-2] + out[-1:]
        if len(b) == 1:
            out = out[:-1]
        return [(out, dtypes[0])]

    def run(self, inputs, outs):
        if outs:
            np.matmul(inputs[0], inputs[1], out=outs[0])
            return [outs[0]]
        return [np.matmul(inputs[0], inputs[1])]

    def flops(self, in_shapes, out_shapes):
        return 2 * int(np.prod(out_shapes[0], dtype=np.int64)) * in_shapes[0][-1]
