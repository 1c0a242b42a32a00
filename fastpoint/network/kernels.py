"""The name of the kernel fastpoint's dispatch picks for a node's convolution (for ``print(net)``)."""

from __future__ import annotations

from typing import Sequence


def conv_kernel_name(op, x_shape: Sequence[int]) -> str:
    """Ask the backend the layer would run on which kernel it picks for this input shape."""
    import fastpoint as fp
    from fastpoint.backends import get_backend
    from fastpoint.core.spec import make_spec

    w = op.weight if op.weight.ndim == 4 else op.weight[:, :, None, :]
    x4 = tuple(x_shape) if len(x_shape) == 4 else tuple(x_shape[:2]) + (1,) + tuple(x_shape[2:])
    layers = list(op._layers.values())
    layer = layers[0] if layers else fp.Conv2d(w, None, 1, 0, 1, op.attrs["group"])
    backend = get_backend(layer._backend_name)
    name = getattr(backend, "kernel_name", None)
    if name is None:
        return backend.name
    if getattr(layer._layer, "layout", "NCHW") == "NHWC":  # the layer of an NHWC plan sees (N, H, W, C)
        x4 = (x4[0], x4[2], x4[3], x4[1])
    try:
        return name(make_spec(layer._layer.with_dtype(w.dtype), x4, w.shape))
    except ValueError:  # explicit asymmetric padding changes the shape the layer sees
        return backend.name
