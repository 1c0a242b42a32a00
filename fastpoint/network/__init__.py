"""Run ONNX models on fastpoint: ``fp.load_onnx(model) -> fp.Network``.

See docs/networks.md for the plan (parsing, folding, memory) and how to add an op.
"""

from __future__ import annotations

from ..core.spec import ALGORITHMS
from . import ops_conv, ops_elementwise, ops_misc, ops_nn, ops_pool, ops_resize, ops_shape  # noqa: F401  (registers the op classes)
from .fusion import fuse_epilogues
from .graph import TensorInfo, fold_batch_norm, fuse_relu, parse, read  # noqa: F401  (fuse_relu: API)
from .layout import LAYOUTS
from .network import Network, gc_paused
from .ops_conv import PackBlocks
from .registry import supported_ops

BACKENDS = ("auto", "c", "numba", "numpy")


def load_onnx(model, *, backend: str = "auto", algorithm: str = "auto", layout: str = "auto") -> Network:
    """Load an ONNX model (a path, bytes or an ``onnx.ModelProto``) to run on NumPy arrays.

    Convolutions run on fastpoint's kernels (``backend`` as in :func:`fastpoint.conv2d`); an op or
    attribute fastpoint does not support raises ``NotImplementedError`` naming it, here at load.
    ``algorithm="winograd"`` runs Winograd on every Conv it applies to (3x3, stride 1, dilation 1,
    groups 1) and is faster on (input channels at least one vector of the ISA in use:
    ``core.winograd.winograd_pays``, docs/winograd.md), the others as ``"auto"``. ``layout`` is the memory order of
    the activations through the graph: ``"NCHW"``, ``"NHWC"`` or ``"auto"`` (chosen per model and
    input shape, see docs/networks.md); inputs and outputs are NCHW either way.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    with gc_paused():  # (network.py)
        graph = parse(*read(model))
        fold_batch_norm(graph)
        fuse_epilogues(graph)
        blocks = PackBlocks.for_graph(graph)  # the network's packed weights, in few blocks (ops_conv.py)
        for node in graph.nodes:
            if hasattr(node.op, "pack_blocks"):
                node.op.pack_blocks = blocks
            if hasattr(node.op, "backend"):
                node.op.backend = backend
            if hasattr(node.op, "algorithm"):
                node.op.algorithm = algorithm
        return Network(graph, backend, layout)


__all__ = ["Network", "TensorInfo", "load_onnx", "supported_ops"]
