"""Run ONNX models on fastpoint: ``fp.load_onnx(model) -> fp.Network``.

See docs/networks.md for the plan (parsing, folding, memory) and how to add an op.
"""

from __future__ import annotations

from ..core.spec import ALGORITHMS
from . import ops_conv, ops_elementwise, ops_misc, ops_nn, ops_pool, ops_resize, ops_shape  # noqa: F401  (registers the op classes)
from .fusion import fuse_epilogues
from .graph import TensorInfo, fold_batch_norm, fuse_relu, parse, read, read_deferred  # noqa: F401  (fuse_relu: API)
from .layout import LAYOUTS
from .network import Network, gc_paused
from .ops_conv import Conv, LoadSource, PackBlocks
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
        # on the C backend, the convolution weights stay in the file until they are packed (below)
        proto, arrays, order, deferred = read_deferred(model) if packs(backend) else (*read(model), None)
        source = None if deferred is None else LoadSource(deferred)
        graph = None
        try:
            graph = parse(proto, arrays, order)
            fold_batch_norm(graph)
            fuse_epilogues(graph)
            blocks = PackBlocks.for_graph(graph)  # the network's packed weights, in few blocks (ops_conv.py)
            for node in graph.nodes:
                op = node.op
                if hasattr(op, "pack_blocks"):
                    op.pack_blocks = blocks
                if hasattr(op, "backend"):
                    op.backend = backend
                if hasattr(op, "algorithm"):
                    op.algorithm = algorithm
                if source is not None and isinstance(op, Conv) and node.inputs[1] in deferred.payloads:
                    op.source = (source, node.inputs[1])
            net = Network(graph, backend, layout)
            if source is not None:
                net.pack()  # (the plan made for the fixed input shapes: its layers packed from the file)
        finally:
            if source is not None:
                source.finish(graph)
        return net


def packs(backend: str) -> bool:
    """Whether ``backend`` (a load_onnx name) packs convolution weights: the C backend."""
    from ..backends import get_backend

    return backend in ("auto", "c") and get_backend(backend).name == "c"


__all__ = ["Network", "TensorInfo", "load_onnx", "supported_ops"]
