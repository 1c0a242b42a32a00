"""Load-time fusion of what follows a convolution into its epilogue (applied where the kernel stores a tile).

Two patterns, on a Conv (or ConvTranspose) whose output has no other reader:

* **Conv -> Add(other)** (the residual of ResNet blocks): the Conv takes ``other`` as a fourth input
  and its kernel adds it before the activation: ``act(conv(x) + other)``. The fused node takes the
  Add's place in the node order (everything it reads is computed by then). If at run time ``other``
  does not have the convolution's output shape (the Add broadcast), the node runs unfused: the
  convolution, then the Add and the activation as their own ops (kept for that).
* **Conv [-> Add] -> activation**: every activation the C epilogue implements (Relu, Clip with
  constant bounds, LeakyRelu, HardSwish, HardSigmoid, Sigmoid, Tanh, PRelu with a per-channel or
  scalar constant slope); fastpoint's conv reports which (``epilogue_activations``).

The squeeze-excitation block (GlobalAveragePool -> Conv 1x1 -> Relu -> Conv 1x1 -> HardSigmoid ->
Mul) needs nothing else: its two activations fuse into the 1x1 convolutions and the Mul writes over its
dying input (the plan's in-place rule), so the block costs one read of ``x`` for the pooling and one
read-modify-write for the scale.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .graph import Graph, Node, _drop_nodes, _readers

CONV_TYPES = ("Conv", "ConvTranspose")


def epilogue_activations() -> Tuple[str, ...]:
    """The activation kinds fastpoint's convolutions fuse (``activation=``; ``fastpoint.core.epilogue``)."""
    try:
        from ..core.epilogue import KINDS
    except ImportError:  # a fastpoint without fused epilogues beyond ReLU
        return ("relu",)
    return tuple(k for k in KINDS if k != "none")


def supports_residual() -> bool:
    """Whether fastpoint's Conv2d takes ``residual=`` (the fused residual add)."""
    import inspect

    from ..api import Conv2d

    return "residual" in inspect.signature(Conv2d.__call__).parameters


def _const(graph: Graph, name: str) -> Optional[np.ndarray]:
    return graph.initializers.get(name) if name else None


def activation_of(graph: Graph, node: Node) -> Optional[Tuple[str, Dict]]:
    """(fastpoint activation name, its parameters) for an activation node, or None when it has none."""
    t, a = node.op.op_type, node.op.attrs
    if t == "Relu":
        return "relu", {}
    if t == "Sigmoid":
        return "sigmoid", {}
    if t == "Tanh":
        return "tanh", {}
    if t == "HardSwish":
        return "hardswish", {}
    if t == "LeakyRelu":
        return "leaky_relu", {"alpha": float(a["alpha"])}
    if t == "HardSigmoid":
        return "hardsigmoid", {"alpha": float(a["alpha"]), "beta": float(a["beta"])}
    if t == "Clip":
        bounds = []
        for i, key in ((1, "min"), (2, "max")):
            if len(node.inputs) > i and node.inputs[i]:
                v = _const(graph, node.inputs[i])
                if v is None:
                    return None  # a bound computed at run time
                bounds.append(float(np.asarray(v).reshape(())))
            else:
                bounds.append(None if a[key] is None else float(a[key]))
        lo, hi = bounds
        return "clip", {"min": -np.inf if lo is None else lo, "max": np.inf if hi is None else hi}
    if t == "PRelu":
        slope = _const(graph, node.inputs[1]) if len(node.inputs) > 1 else None
        if slope is None:
            return None
        return "prelu", {"slope": np.asarray(slope)}
    return None


def _producers(graph: Graph) -> Dict[str, Node]:
    return {o: n for n in graph.nodes for o in n.outputs if o}


def _sole_reader(readers: Dict[str, List[Node]], name: str) -> Optional[Node]:
    """The node that alone reads ``name`` (read once, not a graph output), else None."""
    got = readers.get(name)
    return got[0] if got is not None and len(got) == 1 else None  # (a graph output's reader is None)


def _hand_over(readers: Dict[str, List[Node]], names, old: Node, new: Node) -> None:
    """``new`` reads ``names`` where ``old`` did (the readers map kept up to date as nodes fuse)."""
    for name in names:
        got = readers.get(name)
        if got is not None:
            readers[name] = [new if r is old else r for r in got]


def _drop_reads(readers: Dict[str, List[Node]], names, node: Node) -> None:
    for name in names:
        got = readers.get(name)
        if got is not None:
            got[:] = [r for r in got if r is not node]


def fuse_residual_adds(graph: Graph) -> int:
    """Conv -> Add(other): ``other`` becomes the Conv's residual input (see the module docstring).

    One pass: the readers and producers of every value are counted once and kept up to date as
    nodes fuse; the fused nodes move and drop in one rebuild of the node list."""
    if not supports_residual():
        return 0
    producer, readers = _producers(graph), _readers(graph)
    moved: Dict[int, Node] = {}  # id(Add) -> the Conv that takes its place
    taken = set()  # id of each Conv moved to an Add's place
    for add in [n for n in graph.nodes if n.op.op_type == "Add" and len(n.inputs) == 2]:
        if add.op.attrs.get("broadcast"):
            continue
        candidates = []
        for k in (0, 1):
            conv = producer.get(add.inputs[k])
            if (conv is not None and conv.op.op_type == "Conv" and conv.op.weight is not None
                    and conv.op.activation is None and not conv.op.residual
                    and add.inputs[1 - k] not in graph.initializers and add.inputs[1 - k] != add.inputs[k]
                    and _sole_reader(readers, add.inputs[k]) is add):
                candidates.append((k, conv))
        if not candidates:
            continue
        # the later conv: the other may feed it
        k, conv = candidates[-1] if len(candidates) == 1 else max(candidates, key=lambda c: _position(graph, c[1]))
        other = add.inputs[1 - k]
        while len(conv.inputs) < 3:
            conv.inputs.append("")
        conv.inputs[3:] = [other]
        conv.op.residual = True
        conv.op.unfused.append((add.op, None))  # None: the residual goes here
        conv.op.fused.append("Add")
        readers.pop(conv.outputs[0], None)  # (read by the Add alone: gone)
        conv.outputs[0] = add.outputs[0]
        _hand_over(readers, [other], add, conv)
        moved[id(add)] = conv
        taken.add(id(conv))
        producer[conv.outputs[0]] = conv
    if moved:
        graph.nodes[:] = [moved.get(id(n), n) for n in graph.nodes if id(n) not in taken]
    return len(moved)


def _position(graph: Graph, node: Node) -> int:
    return next(i for i, n in enumerate(graph.nodes) if n is node)


def fuse_activations(graph: Graph) -> int:
    """Conv (possibly with a fused residual) -> activation: the activation runs in the Conv's epilogue."""
    supported = set(epilogue_activations())
    producer, readers = _producers(graph), _readers(graph)
    fused: List[Node] = []
    for node in graph.nodes:
        act = activation_of(graph, node)
        if act is None or act[0] not in supported or not node.inputs:
            continue
        conv = producer.get(node.inputs[0])
        if (conv is None or conv.op.op_type not in CONV_TYPES or conv.op.activation is not None
                or _sole_reader(readers, node.inputs[0]) is not node):
            continue
        if conv.op.op_type == "ConvTranspose" and act[0] != "relu":
            continue  # ConvTranspose2d takes activation="relu" only
        if act[0] == "prelu" and not _per_channel(act[1]["slope"]):
            continue
        conv.op.activation, conv.op.act_params = act
        conv.op.unfused.append((node.op, [graph.initializers.get(n) if n else None for n in node.inputs[1:]]))
        conv.op.fused.append(node.op.op_type)
        readers.pop(node.inputs[0], None)
        _drop_reads(readers, node.inputs[1:], node)
        conv.outputs[0] = node.outputs[0]
        fused.append(node)
        producer[conv.outputs[0]] = conv
    _drop_nodes(graph, fused)
    return len(fused)


def _per_channel(slope: np.ndarray) -> bool:
    """A PRelu slope the epilogue takes: one value, or one per channel ((C,), (C, 1, 1), (1, C, 1, 1))."""
    s = slope.shape
    return slope.size == 1 or (len(s) >= 1 and int(np.prod(s, dtype=np.int64)) == max(s) and
                               (len(s) == 1 or all(d == 1 for d in s[1:]) or (len(s) == 4 and s[0] == 1
                                                                               and s[2:] == (1, 1))))


def fuse_epilogues(graph: Graph) -> int:
    """Both passes (residual first: the activation follows the Add); the number of nodes fused away."""
    return fuse_residual_adds(graph) + fuse_activations(graph)


def prelu_slope(slope: np.ndarray, channels: int) -> np.ndarray:
    """The PRelu slope as one value per output channel."""
    return np.broadcast_to(np.asarray(slope).reshape(-1), (channels,)).copy() if slope.size == 1 else \
        np.asarray(slope).reshape(-1).copy()


__all__: List[str] = ["epilogue_activations", "fuse_activations", "fuse_epilogues", "fuse_residual_adds",
                      "supports_residual"]
