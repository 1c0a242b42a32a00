"""Less common ops that segmentation and image models export: CastLike, ArgMax/ArgMin, Hardmax,
GatherElements, CumSum, DepthToSpace/SpaceToDepth (pixel shuffle), LayerNormalization."""

from __future__ import annotations

import numpy as np

from .ops_shape import NATIVE_DTYPES, Cast
from .registry import Op, normalize_axis, register


@register("CastLike")
class CastLike(Cast):
    """Cast to input 1's dtype."""

    attributes = {"saturate": 1}

    def setup(self):
        self.dtype = None

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or dtypes[1] is None:
            return None
        if dtypes[1] not in NATIVE_DTYPES:
            raise self.unsupported(f"target dtype {dtypes[1]}")
        self.dtype = dtypes[1]
        return super().infer(shapes, dtypes, values)

    def run(self, inputs, outs):
        if inputs[1].dtype not in NATIVE_DTYPES:
            raise self.unsupported(f"target dtype {inputs[1].dtype}")
        self.dtype = inputs[1].dtype
        return super().run(inputs[:1], outs)


@register("ArgMax", "ArgMin")
class ArgReduce(Op):
    attributes = {"axis": 0, "keepdims": 1, "select_last_index": 0}

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None:
            return None
        axis = normalize_axis(self, self.attrs["axis"], len(shapes[0]))
        shape = list(shapes[0])
        if self.attrs["keepdims"]:
            shape[axis] = 1
        else:
            del shape[axis]
        return [(tuple(shape), np.dtype(np.int64))]

    def run(self, inputs, outs):
        x = inputs[0]
        axis = normalize_axis(self, self.attrs["axis"], x.ndim)
        fn = np.argmax if self.op_type == "ArgMax" else np.argmin
        if self.attrs["select_last_index"]:
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        if self.attrs["keepdims"]:
            idx = np.expand_dims(idx, axis)
        return [idx.astype(np.int64)]


@register("Hardmax")
class Hardmax(Op):
    attributes = {"axis": -1}

    def run(self, inputs, outs):
        x = inputs[0]
        if self.opset < 13:
            raise self.unsupported(f"opset {self.opset} (the flattened 2-d form)")
        axis = normalize_axis(self, self.attrs["axis"], x.ndim)
        idx = np.expand_dims(np.argmax(x, axis=axis), axis)
        y = np.zeros_like(x)
        np.put_along_axis(y, idx, 1, axis=axis)
        return [y]


@register("GatherElements")
class GatherElements(Op):
    attributes = {"axis": 0}

    def infer(self, shapes, dtypes, values):
        return None if shapes[1] is None else [(shapes[1], dtypes[0])]

    def run(self, inputs, outs):
        data, idx = inputs
        axis = normalize_axis(self, self.attrs["axis"], data.ndim)
        idx = np.where(idx < 0, idx + data.shape[axis], idx)
        return [np.take_along_axis(data, idx, axis=axis)]


@register("CumSum")
class CumSum(Op):
    attributes = {"exclusive": 0, "reverse": 0}

    def run(self, inputs, outs):
        x = inputs[0]
        axis = normalize_axis(self, int(np.asarray(inputs[1]).reshape(-1)[0]), x.ndim)
        y = np.flip(x, axis) if self.attrs["reverse"] else x
        c = np.cumsum(y, axis=axis, dtype=x.dtype)
        if self.attrs["exclusive"]:
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), np.delete(c, -1, axis=axis)], axis=axis)
        return [np.ascontiguousarray(np.flip(c, axis) if self.attrs["reverse"] else c)]


@register("DepthToSpace", "SpaceToDepth")
class PixelShuffle(Op):
    """DepthToSpace (``DCR`` or ``CRD`` channel order) and its inverse SpaceToDepth, on NCHW."""

    attributes = {"blocksize": None, "mode": "DCR"}

    def setup(self):
        if self.attrs["mode"] not in ("DCR", "CRD"):
            raise self.unsupported(f"mode={self.attrs['mode']!r}")
        if not self.attrs["blocksize"]:
            raise ValueError(f"{self.op_type} node {self.name!r}: attribute 'blocksize' is required")

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None:
            return None
        n, c, h, w = shapes[0]
        b = self.attrs["blocksize"]
        if self.op_type == "DepthToSpace":
            return [((n, c // (b * b), h * b, w * b), dtypes[0])]
        return [((n, c * b * b, h // b, w // b), dtypes[0])]

    def run(self, inputs, outs):
        x = inputs[0]
        n, c, h, w = x.shape
        b = self.attrs["blocksize"]
        if self.op_type == "DepthToSpace":
            if self.attrs["mode"] == "DCR":
                y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
            else:
                y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
            return [np.ascontiguousarray(y).reshape(n, c // (b * b), h * b, w * b)]
        y = x.reshape(n, c, h // b, b, w // b, b)
        y = y.transpose(0, 3, 5, 1, 2, 4) if self.attrs["mode"] == "DCR" else y.transpose(0, 1, 3, 5, 2, 4)
        return [np.ascontiguousarray(y).reshape(n, c * b * b, h // b, w // b)]


@register("LayerNormalization")
class LayerNormalization(Op):
    """Normalized over the axes from ``axis`` on, statistics in float64 (``stash_type``'s float32 or
    wider); the optional Mean and InvStdDev outputs are given too."""

    attributes = {"axis": -1, "epsilon": 1e-5, "stash_type": 1}

    def infer(self, shapes, dtypes, values):
        return super().infer(shapes, dtypes, values) if self.n_outputs == 1 else None

    def run(self, inputs, outs):
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        axis = normalize_axis(self, self.attrs["axis"], x.ndim)
        axes = tuple(range(axis, x.ndim))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        inv = 1 / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + self.attrs["epsilon"])
        y = (x64 - mean) * inv * scale
        if bias is not None:
            y = y + bias
        res = [y.astype(x.dtype), mean.astype(np.float32), inv.astype(np.float32)]
        return res[:self.n_outputs]

