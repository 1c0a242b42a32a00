"""The memory order of the activations through a network: one layout per plan, NCHW or NHWC.

Values keep their ONNX (NCHW) shapes everywhere; the plan only decides which arena buffers are NHWC
in memory (``plan._nhwc_output``): in an NHWC plan every convolution writes (and so runs) NHWC,
elementwise ops and Concat keep their input's order, and an op with no NHWC path gets an NCHW copy
of such an input (``Step.to_nchw``). Graph inputs and outputs are NCHW.

``choose_layout`` picks for a plan's shapes from what fastpoint's kernels measure (docs/networks.md,
"Layout"): NHWC when the network has depthwise convolutions (the NHWC depthwise kernels ran 1.4-2.9x
faster than the NCHW ones at MobileNet shapes) or when its dense convolutions' FLOPs are mostly on wide
inputs (FLOP-weighted mean input channels >= WIDE_CHANNELS: ResNet-50's layers ran 5-12 % faster in
NHWC end to end); NCHW for narrow, large images (U-Net at 32-64 channels: NHWC was even per layer
and 10-15 % slower end to end, its pooling and transposed convolutions converting).
"""

from __future__ import annotations

from typing import Sequence

LAYOUTS = ("auto", "NCHW", "NHWC")

#: FLOP-weighted mean input channels of the dense convolutions from which NHWC is chosen
WIDE_CHANNELS = 128


def is_depthwise(op) -> bool:
    w = getattr(op, "weight", None)
    return (op.op_type == "Conv" and w is not None and w.ndim == 4 and op.attrs.get("group", 1) > 1
            and w.shape[1] == 1)


def choose_layout(steps: Sequence) -> str:
    """``"NHWC"`` or ``"NCHW"`` for a plan's steps (see the module docstring)."""
    flops = weighted = 0.0
    for step in steps:
        op = step.node.op
        if op.op_type != "Conv" or getattr(op, "weight", None) is None or op.weight.ndim != 4:
            continue
        if is_depthwise(op):
            return "NHWC"
        if step.in_shapes and step.in_shapes[0] is not None and step.out_shapes[0] is not None:
            f = float(op.flops(step.in_shapes, step.out_shapes))
            flops += f
            weighted += f * step.in_shapes[0][1]
    return "NHWC" if flops and weighted / flops >= WIDE_CHANNELS else "NCHW"
