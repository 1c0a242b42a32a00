"""MaxPool and AveragePool (1-d and 2-d) on fastpoint's pooling core (``fastpoint.ops.pooling``).

ONNX pads may differ per side and windows may be dilated; MaxPool's optional Indices output is
supported. The output size follows ONNX's rule, which ``ceil_mode`` included is PyTorch's (the last
window starts inside the image or its leading padding). AveragePool divides by the taps that land on
the image, or on image and padding with ``count_include_pad``; taps past the padding (ceil mode)
never count.
"""

from __future__ import annotations

import math

import numpy as np

from .registry import Op, register


def _pool_core():
    from ..ops import pooling

    return pooling


@register("MaxPool", "AveragePool")
class Pool(Op):
    attributes = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": None, "pads": None,
                  "storage_order": 0, "strides": None, "count_include_pad": 0}

    def setup(self):
        a = self.attrs
        if a["kernel_shape"] is None:
            raise ValueError(f"{self.op_type} node {self.name!r}: attribute 'kernel_shape' is required")
        self.rank = len(a["kernel_shape"])
        if self.rank not in (1, 2):
            raise self.unsupported(f"{self.rank}-d pooling (kernel_shape {a['kernel_shape']})")
        if a["auto_pad"] not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
            raise self.unsupported(f"auto_pad={a['auto_pad']!r}")

    def _geometry(self, spatial):
        a, r = self.attrs, self.rank
        k = list(a["kernel_shape"])
        s = list(a["strides"] or [1] * r)
        d = list(a["dilations"] or [1] * r)
        if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * (2 * r)
            for i in range(r):
                total = max((math.ceil(spatial[i] / s[i]) - 1) * s[i] + (k[i] - 1) * d[i] + 1 - spatial[i], 0)
                small, big = total // 2, total - total // 2
                pads[i], pads[r + i] = (small, big) if a["auto_pad"] == "SAME_UPPER" else (big, small)
        elif a["auto_pad"] == "VALID" or a["pads"] is None:
            pads = [0] * (2 * r)
        else:
            pads = list(a["pads"])
        out = [_pool_core().pool_out_size(spatial[i], k[i], s[i], d[i], pads[i], pads[r + i], bool(a["ceil_mode"]))
               for i in range(r)]
        return k, s, d, pads, out

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None:
            return None
        if len(shapes[0]) != self.rank + 2:
            raise self.unsupported(f"input shape {shapes[0]} with a {self.rank}-d kernel")
        *_, out = self._geometry(shapes[0][2:])
        shape = tuple(shapes[0][:2]) + tuple(out)
        return [(shape, dtypes[0]), (shape, np.dtype(np.int64))][:self.n_outputs]

    writes_out = True

    def run(self, inputs, outs):
        core = _pool_core()
        x = inputs[0]
        k, s, d, pads, out = self._geometry(x.shape[2:])
        if self.rank == 1:
            x4, k, s, d = x[:, :, None, :], [1] + k, [1] + s, [1] + d
            pads, out = [0, pads[0], 0, pads[1]], [1] + out
        else:
            x4 = x
        shape = x.shape[:2] + tuple(out[-self.rank:])
        if self.op_type == "MaxPool" and self.n_outputs > 1:
            y, plane = core.max_windows_with_indices(x4, (2, 3), k, s, d, pads, out)
            results = [y.reshape(shape), self._flat_indices(plane, x.shape).reshape(shape)]
            if outs:
                for o, r in zip(outs, results):
                    np.copyto(o, r)
                return list(outs)
            return results
        if outs and self.rank == 2:
            runner = self._c_runner(x, outs[0])
            if runner is not None:
                runner()
                return [outs[0]]
        if self.op_type == "MaxPool":
            y = core.pool_windows(x4, (2, 3), k, s, d, pads, out, "max")
        else:
            y = core.pool_windows(x4, (2, 3), k, s, d, pads, out, "sum",
                                  divisors=self._divisors(x4, k, s, d, pads, out))
        if outs:
            np.copyto(outs[0], y.reshape(shape))
            return [outs[0]]
        return [y.reshape(shape)]

    def _divisors(self, x4, k, s, d, pads, out) -> np.ndarray:
        """AveragePool's divisor of each output pixel (the taps on the image, or with the padding)."""
        core = _pool_core()
        include = bool(self.attrs["count_include_pad"])
        counts = [core.window_counts(x4.shape[2 + i], k[i], s[i], d[i], pads[i], pads[2 + i], out[i], include)
                  for i in range(2)]
        return (counts[0][:, None] * counts[1][None, :]).astype(x4.dtype)

    def _c_runner(self, x: np.ndarray, y: np.ndarray):
        """The C loop of a float32 2-d pooling into ``y``, bound (``runner()``), or None. Either array may
        be NCHW or NHWC in memory (an NHWC plan's buffers): NHWC when both are, vectorised along C."""
        from ..ops import _c
        from .ops_conv import is_nhwc

        if x.dtype != np.float32 or self.rank != 2 or self.n_outputs > 1 or not _c.available() or 0 in x.shape:
            return None
        k, s, d, pads, out = self._geometry(x.shape[2:])
        nhwc = is_nhwc(y) and is_nhwc(x)
        yk = y.transpose(0, 2, 3, 1) if nhwc else y
        if y.shape != x.shape[:2] + tuple(out) or not yk.flags.c_contiguous:
            return None
        div = None if self.op_type == "MaxPool" else self._divisors(x, k, s, d, pads, out)
        return _c.bind_pool2d(x.transpose(0, 2, 3, 1) if nhwc else x, "NHWC" if nhwc else "NCHW", k, s, d, pads, out,
                              "max" if self.op_type == "MaxPool" else "mean", div, yk)

    def bind(self, inputs, outs):
        """The C loop on the plan's fixed arrays, its arguments made once (``Plan._program``); else None."""
        return self._c_runner(inputs[0], outs[0]) if len(outs) == 1 else None

    def _flat_indices(self, plane: np.ndarray, x_shape) -> np.ndarray:
        """ONNX's Indices: into the whole input, flattened row-major (``storage_order=0``) or with the
        spatial dims column-major (``1``), from the per-plane ``h * W + w`` of the pooling core."""
        n, c = x_shape[:2]
        size = int(np.prod(x_shape[2:], dtype=np.int64))
        base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]).reshape(n, c, 1, 1) * size
        if self.attrs["storage_order"] and self.rank == 2:
            h, w = x_shape[2:]
            plane = (plane % w) * h + plane // w
        return base + plane

    def kernel(self, in_shapes):
        """The C loop for 2-d pooling without an Indices output (float32; ``_c_runner``), else NumPy."""
        from ..ops import _c

        return "fp_op_pool2d_f32" if self.rank == 2 and self.n_outputs <= 1 and _c.available() else "numpy"

    def flops(self, in_shapes, out_shapes):
        return int(np.prod(out_shapes[0], dtype=np.int64)) * int(np.prod(self.attrs["kernel_shape"]))
