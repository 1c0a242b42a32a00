"""A plan: the graph specialised to one set of input shapes, with folded shapes and an arena.

Made once per input shapes (the network caches them), in three passes:

1. **Shapes and folding.** Walk the nodes in order with each value's shape, dtype and, where known,
   its value. A node whose inputs are all known (initializers, folded values, ``Shape`` of a value whose
   shape is known) runs now and its outputs become constants: the shape subgraphs PyTorch exports
   (Shape -> Gather -> Concat -> Reshape/Resize) vanish. The others become the plan's steps, with
   their output shapes from each op's ``infer`` (``None`` where a shape depends on a run-time value).
2. **Liveness.** Each value's first and last step. A view op's output (Reshape, Flatten, ...) shares
   its input's storage; an elementwise op may write over input 0 when that input dies at the step.
3. **Arena.** Every storage of known size whose producer writes into a given buffer gets an offset
   in one byte arena, greedy by size (largest first, at the lowest offset that overlaps no storage
   live at the same time): the strategy of XNNPACK's memory planner. Graph outputs get their own
   arrays so a later call never overwrites a result the caller holds.

``peak_bytes`` is the largest total of activations alive at once (arena and the ops' own arrays),
``arena_bytes`` the arena's size.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..ops import _c
from .graph import Graph, Node
from .pages import fresh_bytes
from .registry import Shape

ALIGN = 64


@dataclass
class Step:
    node: Node
    in_shapes: List[Optional[Shape]]
    out_shapes: List[Optional[Shape]]
    out_dtypes: List[Optional[np.dtype]]
    offsets: Optional[List[int]] = None  # arena byte offset of each output (writes_out ops)
    nhwc: Tuple[bool, ...] = ()  # per output: its arena buffer is NHWC in memory (a transposed view)
    to_nchw: Tuple[int, ...] = ()  # inputs that are NHWC in memory and that this op reads as NCHW (a copy)
    to_output: bool = False  # writes a graph output into a recycled array (Plan._output_buffers)
    free_after: Tuple[str, ...] = ()  # values whose last reader is this step


class Plan:
    #: testing hook: a value to fill each run's arena with (NaN shows any read of a buffer never written)
    arena_fill: Optional[float] = None
    #: testing and A/B hook: stage a graph input for an NHWC stem instead of its own loop (Conv.bind_feed)
    no_stem: bool = False

    def __init__(self, graph: Graph, feeds: Dict[str, Tuple[Shape, np.dtype]], layout: str = "NCHW") -> None:
        from .layout import choose_layout

        self.graph = graph
        self.consts: Dict[str, np.ndarray] = {}
        self.steps: List[Step] = []
        self.folded = 0
        self._arenas = threading.local()
        self._fold_and_infer(feeds)
        #: the memory order of the activations: "NCHW" or "NHWC" (layout.py)
        self.layout = choose_layout(self.steps) if layout == "auto" else layout
        self._plan_memory(feeds)

    # -- pass 1 -------------------------------------------------------------------------------
    def _fold_and_infer(self, feeds) -> None:
        shapes: Dict[str, Optional[Shape]] = {n: tuple(s) for n, (s, _) in feeds.items()}
        dtypes: Dict[str, Optional[np.dtype]] = {n: np.dtype(d) for n, (_, d) in feeds.items()}
        known = self.consts
        for name, value in self.graph.initializers.items():
            if name not in feeds:
                known[name] = value
                shapes[name], dtypes[name] = value.shape, value.dtype
        for node in self.graph.nodes:
            ins = node.inputs
            present = [n for n in ins if n]
            op = node.op
            foldable = all(n in known for n in present) or (
                getattr(op, "fold_from_shapes", False) and shapes.get(ins[0]) is not None)
            if foldable:
                args = [known[n] if n in known else _ShapeOnly(shapes[n]) if n else None for n in ins]
                for name, value in zip(node.outputs, op.run(args, None)):
                    if name and value is not None:
                        known[name] = np.asarray(value)
                        shapes[name], dtypes[name] = known[name].shape, known[name].dtype
                self.folded += 1
                continue
            in_shapes = [shapes.get(n) if n else None for n in ins]
            in_dtypes = [dtypes.get(n) if n else None for n in ins]
            values = [known.get(n) if n else None for n in ins]
            is_identity = getattr(op, "is_identity", None)
            if is_identity is not None and len(node.outputs) == 1 and is_identity(in_shapes, values):
                node = _identity_node(node)  # a no-op Pad or Resize: a view of its input, no copy
                op, in_shapes, in_dtypes, values = node.op, in_shapes[:1], in_dtypes[:1], values[:1]
            res = op.infer(in_shapes, in_dtypes, values)
            if res is not None and len(res) != len(node.outputs):
                res = None  # an op that infers fewer outputs than the node has: planned at run time
            out_shapes = [r[0] if res else None for r in (res or [None] * len(node.outputs))]
            out_dtypes = [r[1] if res else None for r in (res or [None] * len(node.outputs))]
            for name, s, d in zip(node.outputs, out_shapes, out_dtypes):
                shapes[name], dtypes[name] = (tuple(s) if s is not None else None), d
            self.steps.append(Step(node, in_shapes, list(out_shapes), list(out_dtypes)))
        self.shapes, self.dtypes = shapes, dtypes

    # -- passes 2 and 3 -----------------------------------------------------------------------
    def _plan_memory(self, feeds) -> None:
        outputs = {o.name for o in self.graph.outputs}
        last: Dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for n in step.node.inputs:
                if n and n not in self.consts:
                    last[n] = i
        end = len(self.steps)
        for n in outputs:
            last[n] = end
        storage: Dict[str, str] = {}  # value -> the value whose storage it uses
        nhwc: Dict[str, bool] = {}  # storage -> NHWC in memory (see _layout_of)
        span: Dict[str, List[int]] = {}  # storage -> [first step, last step]
        size: Dict[str, int] = {}
        for i, step in enumerate(self.steps):
            op, node = step.node.op, step.node
            first_in = node.inputs[0] if node.inputs else ""
            for k, name in enumerate(node.outputs):
                if not name:
                    continue
                shape, dtype = step.out_shapes[k], step.out_dtypes[k]
                if k == 0 and op.view_of_input and first_in in storage:
                    storage[name] = storage[first_in]
                elif (k == 0 and op.in_place and first_in in storage and shape == step.in_shapes[0]
                      and dtype == self.dtypes.get(first_in) and last.get(first_in) == i
                      and span[storage[first_in]][1] <= i and name not in outputs):
                    storage[name] = storage[first_in]
                elif op.writes_out and shape is not None and dtype is not None and name not in outputs:
                    storage[name] = name
                    nhwc[name] = k == 0 and _nhwc_output(step, shape, storage, nhwc, self.layout)
                    span[name] = [i, i]
                    size[name] = int(math.prod(shape)) * dtype.itemsize
                else:
                    continue
                root = storage[name]
                span[root][1] = max(span[root][1], last.get(name, i))
        # a storage shared with a graph output (an output that views it) must not be reused early
        for name, root in storage.items():
            span[root][1] = max(span[root][1], last.get(name, span[root][1]))
        inside = self._concat_in_place(storage, span, size, nhwc)
        self.offsets = _greedy_by_size(span, size)
        self.arena_bytes = -(-max((self.offsets[r] + size[r] for r in size), default=0) // ALIGN) * ALIGN
        for r in inside:  # a Concat input's storage: its slice of the concatenated buffer
            self.offsets[r] = _offset_inside(r, inside, self.offsets)
        self.concat_in_place = len(inside)
        for i, step in enumerate(self.steps):
            outs = step.node.outputs
            if _gets_buffers(step, storage):
                step.offsets = [self.offsets[storage[n]] for n in outs]
                step.nhwc = tuple(nhwc.get(storage[n], False) for n in outs)
            step.free_after = tuple(n for n in set(step.node.inputs) if n and last.get(n) == i)
            step.to_output = (step.node.op.writes_out and all(outs) and all(n in outputs for n in outs)
                              and all(s is not None for s in step.out_shapes)
                              and all(d is not None for d in step.out_dtypes))
            if not _layout_aware(step.node.op):
                step.to_nchw = tuple(j for j, n in enumerate(step.node.inputs)
                                     if n and nhwc.get(storage.get(n, ""), False))
        self.storage = storage
        self.nhwc = nhwc
        self.peak_bytes = self._peak(last, storage, size, span)

    def _concat_in_place(self, storage, span, size, nhwc) -> Dict[str, Tuple[str, int]]:
        """Concat inputs whose producers write straight into their slice of the Concat's buffer.

        In an NCHW plan, when everything before the Concat axis has size 1 (batch 1 on channels),
        each input's slice is one contiguous piece of the output, so a producer can be given that
        piece as its output buffer and the Concat copies nothing for it. Taken in: an input whose
        storage holds that value alone (the same bytes; views and in-place ops before the Concat
        allowed, none after it, so nothing overwrites the slice), is written by a step that is given
        its buffers, and is no other Concat's. The Concat buffer's life then starts at its first
        input's producer. Returns {input storage: (Concat storage, byte offset in it)}.
        """
        inside: Dict[str, Tuple[str, int]] = {}
        if self.layout != "NCHW":
            return inside
        produced: Dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for n in step.node.outputs:
                produced[n] = i
        sharers: Dict[str, List[str]] = {}
        for v, r in storage.items():
            sharers.setdefault(r, []).append(v)
        given = {r for step in self.steps if _gets_buffers(step, storage) for r in step.node.outputs if r}
        for i, step in enumerate(self.steps):
            node = step.node
            c = node.outputs[0] if node.op.op_type == "Concat" else ""
            if not c or storage.get(c) != c or c not in size or any(s is None for s in step.in_shapes):
                continue
            shape, dtype = step.out_shapes[0], step.out_dtypes[0]
            axis = node.op.attrs["axis"] % len(shape)
            if int(math.prod(shape[:axis])) != 1:
                continue
            roots = [storage.get(n) for n in node.inputs]
            offset = 0
            for n, s, r in zip(node.inputs, step.in_shapes, roots):
                nbytes = int(math.prod(s)) * dtype.itemsize
                if (r is not None and r in size and r != c and r not in inside and roots.count(r) == 1
                        and r in given and size[r] == nbytes and not nhwc.get(r) and self.dtypes.get(n) == dtype
                        and all(produced[v] < i for v in sharers[r])):
                    inside[r] = (c, offset)
                    span[c] = [min(span[c][0], span[r][0]), max(span[c][1], span[r][1])]
                    del size[r], span[r]
                offset += nbytes
        return inside

    def _peak(self, last, storage, size, span) -> int:
        """Largest total of activation bytes alive at once (an arena storage counts once, over its span)."""
        delta = [0] * (len(self.steps) + 2)
        for root, n in size.items():
            delta[span[root][0]] += n
            delta[span[root][1] + 1] -= n
        for j, step in enumerate(self.steps):
            for name in step.node.outputs:
                shape, dtype = self.shapes.get(name), self.dtypes.get(name)
                if name and name not in storage and shape is not None and dtype is not None:
                    nbytes = int(math.prod(shape)) * dtype.itemsize
                    delta[j] += nbytes
                    delta[min(last.get(name, j), len(self.steps)) + 1] -= nbytes
        peak = live = 0
        for d in delta:
            live += d
            peak = max(peak, live)
        return peak

    # -- running ------------------------------------------------------------------------------
    def _output_buffers(self, step: Step) -> List[np.ndarray]:
        """Arrays for a step that writes graph outputs: last call's, where the caller no longer holds it.

        A fresh array for a large output costs its page faults on every call (5.5 MiB of logits: a few
        ms); one whose last result nobody references (the only reference is this per-thread pool's, so
        no view of it exists either) is written again instead. A result the caller keeps is never
        touched: it gets a new array and the pool forgets it.
        """
        pool = self._arenas.__dict__.setdefault("outputs", {})
        outs = []
        for name, shape, dtype in zip(step.node.outputs, step.out_shapes, step.out_dtypes):
            if not _recyclable(pool, name) or pool[name].shape != tuple(shape) or pool[name].dtype != dtype:
                # the first: 4 KiB pages populated in one call (NumPy gives 4 MiB and more huge pages,
                # whose first touch on a VM cost lraspp's first call up to 20 ms: pages.py); later ones
                # (the caller kept the last): NumPy's, from the heap that earlier results freed
                pool[name] = np.empty(shape, dtype) if name in pool else _fresh_array(shape, dtype)
            outs.append(pool[name])
        return outs

    def _program(self) -> List[Callable[[Dict[str, np.ndarray]], None]]:
        """This thread's program: one prebound entry per step, made on the thread's first call.

        The arena is this thread's, so every arena value's array (a view of it) is fixed: each step's
        output views are made here once, and an op with a ``bind`` (a convolution, the C ops) gets its
        inputs and outputs now and returns a runner that takes no arguments (its arrays, pointers and
        kernel plan resolved once), so a step costs its kernel call, not the look-ups and checks of
        ``run``. Any other step (graph inputs, NCHW copies, dynamic shapes, graph outputs) runs
        ``op.run`` with its fixed output views (``_run_step``).
        """
        local = self._arenas
        arena = local.arena = self._new_arena(self.arena_bytes)
        fixed: Dict[str, np.ndarray] = {}  # value -> its array in this arena (an output the plan gives a buffer)
        outs_of: List[Optional[List[np.ndarray]]] = []
        views: Dict[int, np.ndarray] = {}  # step -> the fixed view a view op makes of a fixed array
        for i, step in enumerate(self.steps):
            outs = None
            if step.offsets is not None:
                outs = [_view(arena, off, s, d, t) for off, s, d, t in
                        zip(step.offsets, step.out_shapes, step.out_dtypes, step.nhwc)]
                fixed.update(zip(step.node.outputs, outs))
            else:
                view = self._fixed_view(step, fixed, arena)
                if view is not None:
                    views[i] = fixed[step.node.outputs[0]] = view
            outs_of.append(outs)
        program = []
        feeds = {i.name for i in self.graph.inputs}
        for i, (step, outs) in enumerate(zip(self.steps, outs_of)):
            entry = None
            if i in views:  # a reshape/identity of a fixed array: its view, made above, published
                program.append(_bound_entry(_nothing, ((step.node.outputs[0], views[i]),), step.free_after))
                continue
            bind = getattr(step.node.op, "bind", None)
            ins = [n for n in step.node.inputs if n]
            staged = self._stage_feed(step, feeds)
            bind_feed = getattr(step.node.op, "bind_feed", None)
            if staged and outs is not None and bind_feed is not None and not self.no_stem:
                feed_runner = bind_feed(step.in_shapes[0], self.dtypes.get(staged[0]), outs[0])
                if feed_runner is not None:  # the stem reads the graph input itself: no staging copy
                    program.append(_feed_entry(feed_runner, staged[0], partial(self._run_step, step, outs, arena),
                                               tuple(zip(step.node.outputs, outs)), step.free_after))
                    continue
            arrays = dict(fixed, **{staged[0]: staged[1]}) if staged else fixed
            values = [step.node.inputs[i] for i in step.node.op.needs_values() if i < len(step.node.inputs)]
            if (bind is not None and outs is not None and not step.to_nchw
                    and all(n in arrays or n in self.consts for n in ins)
                    and all(not n or n in self.consts for n in values)):  # (sizes, scales: plan-time values)
                runner = bind([arrays.get(n, self.consts.get(n)) if n else None for n in step.node.inputs], outs)
                if runner is not None:
                    entry = _bound_entry(runner, tuple(zip(step.node.outputs, outs)), step.free_after, staged)
            program.append(entry or partial(self._run_step, step, outs, arena))
        local.program = program
        return program

    def _new_arena(self, nbytes: int) -> np.ndarray:
        """This thread's arena: fresh memory with every page faulted in by one call, 4 KiB ones (pages.py:
        NumPy's huge pages are a lottery on a VM). (tiled.py's cropped plans share one per thread instead.)"""
        return fresh_bytes(nbytes, populate=True)

    def _fixed_view(self, step: Step, fixed: Dict[str, np.ndarray], arena: np.ndarray) -> Optional[np.ndarray]:
        """A view op's output when its input is one of this thread's fixed arena arrays and its other inputs
        are plan-time values: the same view every call (an Identity standing for a no-op Pad/Resize, a
        Reshape or Flatten), made once so the step costs nothing and later steps can bind to it. None when it
        would be a copy (an NHWC buffer read as NCHW) or any input is a run-time value."""
        node, op = step.node, step.node.op
        if not op.view_of_input or len(node.outputs) != 1 or not node.inputs or node.inputs[0] not in fixed:
            return None
        if any(n and n not in self.consts for n in node.inputs[1:]):
            return None
        x = fixed[node.inputs[0]]
        value = op.run([x] + [self.consts[n] if n else None for n in node.inputs[1:]], None)[0]
        if value is None or not np.may_share_memory(value, x) or value.shape != tuple(step.out_shapes[0] or ()):
            return None
        return value

    def _stage_feed(self, step: Step, feeds) -> Optional[Tuple[str, np.ndarray]]:
        """An NHWC plan's convolution reading a graph input (NCHW): an NHWC buffer of this thread that the
        step binds to in the input's place; each call converts the input into it in one threaded C pass
        (``_bound_entry``) instead of the convolution's NumPy copy. None for any other step."""
        node = step.node
        name = node.inputs[0] if node.inputs else ""
        shape, dtype = step.in_shapes[0] if step.in_shapes else None, self.dtypes.get(name)
        if (self.layout != "NHWC" or node.op.op_type != "Conv" or name not in feeds or shape is None
                or len(shape) != 4 or dtype != np.float32 or not step.nhwc or not step.nhwc[0]):
            return None
        return name, np.empty((shape[0], shape[2], shape[3], shape[1]), dtype).transpose(0, 3, 1, 2)

    def _run_step(self, step: Step, outs: Optional[List[np.ndarray]], arena: np.ndarray,
                  env: Dict[str, np.ndarray]) -> None:
        """One step the general way: its inputs from ``env``, ``op.run``, its results into ``env``."""
        node = step.node
        args = [env[n] if n else None for n in node.inputs]
        for j in step.to_nchw:
            args[j] = _c.contiguous(args[j])
        if outs is None and step.to_output:
            outs = self._output_buffers(step)
        results = node.op.run(args, outs)
        for name, value in zip(node.outputs, results):
            if name:
                if outs is None and value is not None and not node.op.view_of_input \
                        and np.may_share_memory(value, arena):
                    value = value.copy()  # a view of an input in the arena would outlive that input
                env[name] = value
        for name in step.free_after:
            env.pop(name, None)

    def run(self, feeds: Dict[str, np.ndarray], profile: Optional[List[float]] = None) -> Dict[str, np.ndarray]:
        program = getattr(self._arenas, "program", None)  # one per thread: concurrent calls never share one
        if program is None:
            program = self._program()
        arena = self._arenas.arena
        if self.arena_fill is not None:
            arena.view(np.float32)[:] = self.arena_fill  # arena_bytes is a multiple of 4: offsets are aligned
        env: Dict[str, np.ndarray] = dict(self.consts)
        env.update(feeds)
        if profile is None:
            for entry in program:
                entry(env)
        else:
            clock = time.perf_counter
            for entry in program:
                t0 = clock()
                entry(env)
                profile.append(clock() - t0)
        result = {}
        for o in self.graph.outputs:
            value = env[o.name]
            in_arena = np.may_share_memory(value, arena)
            of_feed = any(np.may_share_memory(value, x) for x in feeds.values())  # e.g. Identity(input)
            owned = o.name in self.consts or in_arena or of_feed
            result[o.name] = np.array(value, copy=True, order="C") if owned else _c.contiguous(value)
        return result


def _bound_entry(runner: Callable[[], None], outputs: Tuple[Tuple[str, np.ndarray], ...],
                 free_after: Tuple[str, ...], staged: Optional[Tuple[str, np.ndarray]] = None
                 ) -> Callable[[Dict[str, np.ndarray]], None]:
    """A program entry for a prebound step: (convert a graph input into its staging buffer,) run it,
    publish its fixed outputs, drop dead values."""

    def entry(env: Dict[str, np.ndarray]) -> None:
        if staged is not None and not _c.to_layout(env[staged[0]], staged[1]):
            np.copyto(staged[1], env[staged[0]])
        runner()
        for name, value in outputs:
            env[name] = value
        for name in free_after:
            env.pop(name, None)

    return entry


def _feed_entry(runner: Callable[[np.ndarray], bool], feed: str, fallback: Callable[[Dict[str, np.ndarray]], None],
                outputs: Tuple[Tuple[str, np.ndarray], ...], free_after: Tuple[str, ...]
                ) -> Callable[[Dict[str, np.ndarray]], None]:
    """A program entry for a step bound to a graph input (``Conv.bind_feed``): its runner reads the call's
    input ``feed``; an input it declines runs the step the general way (``fallback``)."""

    def entry(env: Dict[str, np.ndarray]) -> None:
        if not runner(env[feed]):
            fallback(env)
            return
        for name, value in outputs:
            env[name] = value
        for name in free_after:
            env.pop(name, None)

    return entry


def _nothing() -> None:
    """The runner of a step whose work the plan did ahead (a fixed view, a Concat its producers filled)."""


def _recyclable(pool: Dict[str, np.ndarray], name: str) -> bool:
    """The pool's array for ``name`` is referenced by the pool alone (the caller dropped last call's result)."""
    return name in pool and sys.getrefcount(pool[name]) == 2  # the dict's reference and getrefcount's argument


def _fresh_array(shape: Shape, dtype: np.dtype) -> np.ndarray:
    """A new array on freshly mapped, populated pages (pages.fresh_bytes)."""
    n = int(math.prod(shape)) * np.dtype(dtype).itemsize
    return fresh_bytes(n, populate=True)[:n].view(dtype).reshape(shape)


def _view(arena: np.ndarray, offset: int, shape: Shape, dtype: np.dtype, nhwc: bool = False) -> np.ndarray:
    """The arena bytes at ``offset`` as an array of ``shape`` (NCHW), NHWC in memory when ``nhwc``."""
    n = int(math.prod(shape)) * dtype.itemsize
    flat = arena[offset:offset + n].view(dtype)
    if nhwc:
        return flat.reshape(shape[0], shape[2], shape[3], shape[1]).transpose(0, 3, 1, 2)
    return flat.reshape(shape)


def _gets_buffers(step: Step, storage: Dict[str, str]) -> bool:
    """Whether the plan gives a step arena buffers for its outputs (else it makes its own arrays)."""
    outs = step.node.outputs
    return step.node.op.writes_out and all(outs) and all(n in storage for n in outs)


def _offset_inside(root: str, inside: Dict[str, Tuple[str, int]], offsets: Dict[str, int]) -> int:
    """A Concat input's byte offset: its Concat's (itself possibly inside another Concat) plus its own."""
    outer, offset = inside[root]
    return (_offset_inside(outer, inside, offsets) if outer in inside else offsets[outer]) + offset


def _identity_node(node: Node) -> Node:
    """An Identity standing for a node that changes nothing for these shapes (shown as "<Op> (no-op)")."""
    from .ops_shape import Identity

    op = Identity("Identity", node.name, {}, node.op.opset, 1, 1)
    op.fused.append(f"{node.op.op_type} (no-op)")
    return Node(op, node.inputs[:1], list(node.outputs))


#: ops that read and write either memory order at full speed: an NHWC plan keeps their outputs NHWC
IMAGE_OPS = ("MaxPool", "AveragePool", "Resize", "Upsample")


def _layout_aware(op) -> bool:
    """Ops that run on NHWC memory as fast as on NCHW (the others get an NCHW copy of such inputs)."""
    return (op.op_type in ("Conv", "ConvTranspose", "Concat", "GlobalAveragePool", "GlobalMaxPool") + IMAGE_OPS
            or op.in_place)


def _nhwc_output(step: Step, shape: Shape, storage: Dict[str, str], nhwc: Dict[str, bool], layout: str) -> bool:
    """Whether a step's new arena buffer is NHWC in memory (in a plan of ``layout`` NHWC).

    Every value keeps its NCHW shape (so ops with axes, Concat, Softmax, Reshape, ..., mean what ONNX
    says); only the memory order changes. A convolution writes NHWC (and so runs NHWC); an elementwise op
    or a Concat writes in the layout of its input; every other op gets NCHW buffers (or makes its own
    arrays) and reads any strides: where a layout changes, a consumer converts (one copy).
    """
    if len(shape) != 4:
        return False
    op = step.node.op
    if op.op_type in ("Conv", "ConvTranspose"):
        w_rank = op.weight.ndim if op.weight is not None else len(step.in_shapes[1] or ())
        return layout == "NHWC" and w_rank == 4
    if op.op_type in IMAGE_OPS:  # pooling and resizing (their C loops): the input's order
        return step.node.inputs[0] in storage and nhwc.get(storage[step.node.inputs[0]], False)
    if op.in_place or op.op_type == "Concat":
        ins = step.node.inputs[:1] if op.op_type == "Concat" else step.node.inputs
        return any(n and nhwc.get(storage.get(n, ""), False) and (op.op_type == "Concat" or s == shape)
                   for n, s in zip(ins, step.in_shapes))
    return False


def _greedy_by_size(span: Dict[str, List[int]], size: Dict[str, int]) -> Dict[str, int]:
    """Offsets: largest storage first, each at the lowest aligned offset clear of overlapping lives."""
    placed: List[Tuple[int, int, int, int]] = []  # (offset, end, first, last)
    offsets: Dict[str, int] = {}
    for name in sorted(size, key=lambda n: (-size[n], span[n][0])):
        first, last_ = span[name]
        busy = sorted((o, e) for o, e, f, l in placed if f <= last_ and first <= l)
        offset = 0
        for o, e in busy:
            if offset + size[name] <= o:
                break
            offset = max(offset, -(-e // ALIGN) * ALIGN)
        offsets[name] = offset
        placed.append((offset, offset + size[name], first, last_))
    return offsets


class _ShapeOnly:
    """Stands for a value whose shape (not contents) the plan knows, for ``Shape`` and ``Size``."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(shape)
        self.size = int(math.prod(self.shape))
