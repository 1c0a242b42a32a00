"""``fastpoint.Network``: a loaded ONNX graph that runs on NumPy arrays."""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .graph import Graph, TensorInfo
from .plan import Plan

MAX_PLANS = 16  # plans kept per network (one per input shape); more shapes evict the oldest


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside: for the load and the first call, which make thousands of small
    objects (ops, layers, kept call plans, bound runners) and no cycles, so that a collection would walk
    every object of the process (onnx, numpy, ...) for nothing (lraspp: 2-3 ms of the load, six young
    collections, ~1 ms, of the first call)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class Network:
    """A model loaded by :func:`fastpoint.load_onnx`.

    >>> net = fp.load_onnx("unet.onnx")
    >>> y = net(x)                       # one input, one output
    >>> outs = net.run({"input": x})     # {output name: array}
    >>> print(net)                       # layer table: op, shapes, FLOPs, kernel, fused ops
    """

    def __init__(self, graph: Graph, backend: str = "auto", layout: str = "auto") -> None:
        self._graph = graph
        self.backend = backend
        self.layout = layout  # "NCHW", "NHWC" or "auto" (each plan picks for its shapes: layout.py)
        self._plans: Dict[Tuple, Plan] = {}
        self._last: Optional[Plan] = None
        self._lock = threading.Lock()
        self._ran = False  # a first call (gc_paused) is behind us
        self._spare: Optional[Tuple[Plan, list, np.ndarray]] = None  # pack(): a program for the first run
        static = {i.name: i for i in graph.inputs if i.shape is not None and all(isinstance(d, int) for d in i.shape)}
        if len(static) == len(graph.inputs) and all(i.dtype is not None for i in graph.inputs):
            # every input shape is fixed: plan now, so anything the shapes make unsupported fails at load
            self._plan({i.name: (tuple(i.shape), i.dtype) for i in graph.inputs})

    def pack(self) -> None:
        """Bind a program of the plan made at load (the one for the fixed input shapes): its convolution
        layers pack now, while load_onnx still holds the file their weights are read from. The program
        and its arena are kept for the network's first run, in whichever thread it comes (no second
        arena where the loading thread never runs the network)."""
        plan = self._last
        if plan is not None:
            plan._program()  # (made for this thread: taken back out of its thread-local below)
            local = plan._arenas.__dict__
            self._spare = (plan, local.pop("program"), local.pop("arena"))

    def _claim_spare(self, plan: Plan) -> None:
        """The first run of ``plan`` in a thread with no program of it takes pack()'s, if still spare."""
        spare = self._spare  # (read once: another thread's first run may take it meanwhile)
        if spare is None or spare[0] is not plan or hasattr(plan._arenas, "program"):
            return
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            plan._arenas.program, plan._arenas.arena = spare[1], spare[2]

    @property
    def inputs(self) -> List[TensorInfo]:
        return list(self._graph.inputs)

    @property
    def outputs(self) -> List[TensorInfo]:
        return list(self._graph.outputs)

    def _plan(self, feeds: Dict[str, Tuple[Tuple[int, ...], np.dtype]]) -> Plan:
        key = tuple(sorted((n, tuple(s), np.dtype(d).str) for n, (s, d) in feeds.items()))
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key)
                if plan is None:
                    if len(self._plans) >= MAX_PLANS:
                        self._plans.pop(next(iter(self._plans)))
                    plan = self._plans[key] = Plan(self._graph, feeds, self.layout)
        self._last = plan
        return plan

    def _check_feeds(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            raise TypeError(f"run() takes a dict {{input name: array}}, got {type(feeds).__name__}")
        names = [i.name for i in self._graph.inputs]
        missing = [n for n in names if n not in feeds]
        unknown = [n for n in feeds if n not in names]
        if missing or unknown:
            raise ValueError(f"the network's inputs are {names}; missing {missing}, unknown {unknown}")
        checked = {}
        for info in self._graph.inputs:
            x = np.asarray(feeds[info.name])
            if info.dtype is not None and x.dtype != info.dtype:
                raise TypeError(f"input {info.name!r} must be {info.dtype}, got {x.dtype} with shape {x.shape}")
            if info.shape is not None and (len(info.shape) != x.ndim or any(
                    isinstance(d, int) and d != s for d, s in zip(info.shape, x.shape))):
                raise ValueError(f"input {info.name!r} must have shape {info.shape}, got {x.shape}")
            checked[info.name] = np.ascontiguousarray(x)
        return checked

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the graph: ``{input name: array}`` -> ``{output name: array}``."""
        feeds = self._check_feeds(feeds)
        plan = self._plan({n: (x.shape, x.dtype) for n, x in feeds.items()})
        if self._ran:
            return plan.run(feeds)
        self._claim_spare(plan)
        with gc_paused():  # the first call binds every step and packs every layer (or takes pack()'s)
            result = plan.run(feeds)
        self._ran = True
        return result

    def __call__(self, x) -> np.ndarray:
        if len(self._graph.inputs) != 1 or len(self._graph.outputs) != 1:
            raise TypeError(f"net(x) needs one input and one output (this network has {len(self._graph.inputs)} "
                            f"and {len(self._graph.outputs)}): use net.run({{name: array}})")
        return self.run({self._graph.inputs[0].name: x})[self._graph.outputs[0].name]

    def plan(self, feeds: Optional[Dict[str, np.ndarray]] = None) -> Plan:
        """The plan for these inputs (arrays or ``(shape, dtype)`` pairs), or the last one used."""
        if feeds is None:
            if self._last is None:
                raise ValueError("no plan yet: the inputs have free dimensions; pass inputs or run the network")
            return self._last
        return self._plan({n: (v.shape, v.dtype) if hasattr(v, "shape") else v for n, v in feeds.items()})

    def profile(self, feeds: Dict[str, np.ndarray], repeat: int = 5) -> List[Tuple[str, str, float]]:
        """Median seconds per step over ``repeat`` runs: ``[(node name, op type, seconds), ...]``."""
        feeds = self._check_feeds(feeds)
        plan = self._plan({n: (x.shape, x.dtype) for n, x in feeds.items()})
        self._claim_spare(plan)
        runs = []
        for _ in range(repeat):
            times: List[float] = []
            plan.run(feeds, profile=times)
            runs.append(times)
        med = np.median(np.array(runs), axis=0) if runs and runs[0] else []
        return [(s.node.name, s.node.op.op_type, float(t)) for s, t in zip(plan.steps, med)]

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}{list(i.shape) if i.shape else ''}" for i in self._graph.inputs)
        outs = ", ".join(f"{o.name}{list(o.shape) if o.shape else ''}" for o in self._graph.outputs)
        return f"<fastpoint.Network {len(self._graph.nodes)} nodes, inputs {ins}, outputs {outs}>"

    def __str__(self) -> str:
        from .summary import layer_table

        return layer_table(self._graph, self._last)

