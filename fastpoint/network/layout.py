"""The memory order of the activations through a network: one layout, chosen per model.

Values keep their ONNX (NCHW) shapes everywhere; the plan only decides which arena buffers are NHWC
in memory (``plan._nhwc_output``): a convolution running NHWC writes NHWC, elementwise ops and Concat
keep their input's order, and any op that needs NCHW memory (or has no NHWC path) gets a converted
copy from the consumer that needs it. Graph inputs and outputs are NCHW.

``choose_layout`` picks per model from what fastpoint's kernels measure on its layer shapes
(docs/networks.md, "Layout"): NHWC when depthwise convolutions are present (fastpoint's NHWC
depthwise kernels run them 1.4-2.9x faster than NCHW ones at MobileNet shapes, and the pointwise
layers around them are even or faster in NHWC), NCHW otherwise (dense 3x3 and 1x1 layers of ResNet and
U-Net shapes measure even or up to 1.3x faster in NCHW).
"""

from __future__ import annotations

from .graph import Graph

LAYOUTS = ("auto", "NCHW", "NHWC")


def is_depthwise(op) -> bool:
    w = getattr(op, "weight", None)
    g = op.attrs.get("group", 1) if hasattr(op, "attrs") else 1
    return op.op_type == "Conv" and w is not None and w.ndim == 4 and g > 1 and w.shape[1] == 1


def choose_layout(graph: Graph) -> str:
    """``"NHWC"`` for a network with depthwise convolutions, else ``"NCHW"`` (see the module docstring)."""
    return "NHWC" if any(is_depthwise(n.op) for n in graph.nodes) else "NCHW"
