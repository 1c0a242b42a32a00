"""Normalization, softmax, padding, global pooling and reductions."""

from __future__ import annotations

import numpy as np

from .registry import Op, int_list, normalize_axis, register


@register("BatchNormalization")
class BatchNormalization(Op):
    """Inference-mode batch norm; the plan folds it into the preceding Conv when it can."""

    attributes = {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "spatial": 1, "is_test": 1,
                  "consumed_inputs": None}
    writes_out = True
    in_place = True

    def setup(self):
        if self.attrs["training_mode"]:
            raise self.unsupported("training_mode=1")
        if self.attrs["spatial"] != 1:
            raise self.unsupported("spatial=0")
        if self.n_outputs > 1:
            raise self.unsupported("the training outputs (running mean/var)")

    def scale_shift(self, scale, bias, mean, var):
        """Per-channel ``k, c`` of ``y = k * x + c``, in float64 (rounded once at the end)."""
        k = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + self.attrs["epsilon"])
        return k, np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * k

    def run(self, inputs, outs):
        x = inputs[0]
        k, c = self.scale_shift(*inputs[1:5])
        shape = (1, -1) + (1,) * (x.ndim - 2)
        out = outs[0] if outs else np.empty(x.shape, x.dtype)
        np.multiply(x, k.astype(x.dtype).reshape(shape), out=out)
        out += c.astype(x.dtype).reshape(shape)
        return [out]


@register("InstanceNormalization")
class InstanceNormalization(Op):
    """``(x - mean) / sqrt(var + eps) * scale + B`` over each (sample, channel)'s spatial dims."""

    attributes = {"epsilon": 1e-5}

    def run(self, inputs, outs):
        x, scale, bias = inputs
        axes = tuple(range(2, x.ndim))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        var = x64.var(axis=axes, keepdims=True)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x64 - mean) / np.sqrt(var + self.attrs["epsilon"]) * scale.reshape(shape) + bias.reshape(shape)
        return [y.astype(x.dtype)]


@register("Softmax", "LogSoftmax")
class Softmax(Op):
    """Opset >= 13: along ``axis`` (default -1); before: over the flattened dims from ``axis`` (default 1)."""

    attributes = {"axis": None}
    writes_out = True

    def run(self, inputs, outs):
        x = inputs[0]
        old = self.opset < 13
        axis = self.attrs["axis"] if self.attrs["axis"] is not None else (1 if old else -1)
        axis = normalize_axis(self, axis, x.ndim)
        xv = x.reshape(x.shape[:axis] + (-1,)) if old else x
        ax = -1 if old else axis
        shifted = xv - np.max(xv, axis=ax, keepdims=True)
        e = np.exp(shifted)
        s = np.sum(e, axis=ax, keepdims=True)
        res = shifted - np.log(s) if self.op_type == "LogSoftmax" else e / s
        out = outs[0] if outs else np.empty(x.shape, x.dtype)
        np.copyto(out, res.reshape(x.shape))
        return [out]

    def flops(self, in_shapes, out_shapes):
        return 4 * int(np.prod(out_shapes[0], dtype=np.int64))


@register("Pad")
class Pad(Op):
    """``constant`` / ``reflect`` / ``edge`` / ``wrap`` padding; negative pads crop."""

    flops_per_output = 0
    attributes = {"mode": "constant", "pads": None, "value": 0.0}
    modes = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}

    def setup(self):
        if self.attrs["mode"] not in self.modes:
            raise self.unsupported(f"mode={self.attrs['mode']!r}")

    def needs_values(self):
        return (1, 3) if self.opset >= 11 else ()

    def _pads(self, rank, values):
        if self.opset < 11:
            return self.attrs["pads"], self.attrs["value"]
        pads = int_list(values[1])
        value = values[2] if len(values) > 2 and values[2] is not None and values[2].size else 0
        if len(values) > 3 and values[3] is not None:
            axes = [normalize_axis(self, a, rank) for a in int_list(values[3])]
            full = [0] * (2 * rank)
            for i, a in enumerate(axes):
                full[a], full[rank + a] = pads[i], pads[len(axes) + i]
            pads = full
        return pads, value

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or any(values[i] is None for i in self.needs_values() if i < len(values)):
            return None
        rank = len(shapes[0])
        pads, _ = self._pads(rank, values)
        return [(tuple(d + pads[i] + pads[rank + i] for i, d in enumerate(shapes[0])), dtypes[0])]

    def is_identity(self, shapes, values) -> bool:
        """All pads zero (MONAI's UpCat pads by the size difference, often none): the plan makes it a view."""
        if shapes[0] is None or any(values[i] is None for i in self.needs_values() if i < len(values)):
            return False
        return not any(self._pads(len(shapes[0]), values)[0])

    def run(self, inputs, outs):
        x = inputs[0]
        rank = x.ndim
        pads, value = self._pads(rank, inputs)
        crop = tuple(slice(max(-pads[i], 0), x.shape[i] - max(-pads[rank + i], 0)) for i in range(rank))
        width = [(max(pads[i], 0), max(pads[rank + i], 0)) for i in range(rank)]
        mode = self.modes[self.attrs["mode"]]
        kw = {"constant_values": np.asarray(value).reshape(()).astype(x.dtype)} if mode == "constant" else {}
        return [np.pad(x[crop], width, mode=mode, **kw)]


@register("GlobalAveragePool", "GlobalMaxPool")
class GlobalPool(Op):
    writes_out = True

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None:
            return None
        return [(shapes[0][:2] + (1,) * (len(shapes[0]) - 2), dtypes[0])]

    def _c_case(self, x: np.ndarray, out: np.ndarray):
        """``(x, layout, out)`` as the C loop takes them (one threaded pass, float64 partial sums), or None."""
        from ..ops import _c

        if not (self.op_type == "GlobalAveragePool" and x.ndim == 4 and x.dtype == np.float32 and x.size
                and _c.available() and out.flags.c_contiguous):
            return None
        from .ops_conv import is_nhwc

        if is_nhwc(x):  # NHWC memory (an NHWC plan): its own loop, no NCHW copy first
            return x.transpose(0, 2, 3, 1), "NHWC", out.reshape(out.shape[0], 1, 1, out.shape[1])
        return (x, "NCHW", out) if x.flags.c_contiguous else None

    def run(self, inputs, outs):
        x = inputs[0]
        out = outs[0] if outs else np.empty(x.shape[:2] + (1,) * (x.ndim - 2), x.dtype)
        case = self._c_case(x, out)
        if case is not None:
            from ..ops import _c

            _c.bind_global_avg_pool(*case)()
            return [out]
        fn = np.mean if self.op_type == "GlobalAveragePool" else np.max
        np.copyto(out, fn(x, axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype, copy=False))
        return [out]

    def bind(self, inputs, outs):
        """The C loop on the plan's fixed arrays, its arguments made once (``Plan._program``); else None."""
        case = self._c_case(inputs[0], outs[0])
        if case is None:
            return None
        from ..ops import _c

        return _c.bind_global_avg_pool(*case)

    def kernel(self, in_shapes):
        """The C loop for 4-d GlobalAveragePool (float32; ``_c_case``), else NumPy."""
        from ..ops import _c

        shape = in_shapes[0] if in_shapes else None
        ok = self.op_type == "GlobalAveragePool" and shape is not None and len(shape) == 4 and _c.available()
        return "fp_op_gap_f32" if ok else "numpy"

    def flops(self, in_shapes, out_shapes):
        return int(np.prod(in_shapes[0], dtype=np.int64))


_REDUCE = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min,
           "ReduceProd": np.prod, "ReduceL2": None, "ReduceSumSquare": None}


@register(*_REDUCE)
class Reduce(Op):
    """Axes from the attribute (older opsets) or input 1 (ReduceSum >= 13, the others >= 18)."""

    attributes = {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0}

    def _axes_from_input(self) -> bool:
        return self.opset >= (13 if self.op_type == "ReduceSum" else 18)

    def needs_values(self):
        return (1,) if self._axes_from_input() and self.n_inputs > 1 else ()

    def _axes(self, rank, values):
        if self._axes_from_input():
            axes = int_list(values[1]) if len(values) > 1 and values[1] is not None else []
        else:
            axes = list(self.attrs["axes"] or [])
        if not axes:
            return None if self.attrs["noop_with_empty_axes"] else tuple(range(rank))
        return tuple(normalize_axis(self, a, rank) for a in axes)

    def _reduce(self, x, axes):
        keep = bool(self.attrs["keepdims"])
        if self.op_type == "ReduceL2":
            return np.sqrt(np.sum(np.square(x), axis=axes, keepdims=keep))
        if self.op_type == "ReduceSumSquare":
            return np.sum(np.square(x), axis=axes, keepdims=keep)
        return _REDUCE[self.op_type](x, axis=axes, keepdims=keep)

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or any(values[i] is None for i in self.needs_values()):
            return None
        axes = self._axes(len(shapes[0]), values)
        if axes is None:
            return [(shapes[0], dtypes[0])]
        keep = self.attrs["keepdims"]
        out = tuple(1 if i in axes else d for i, d in enumerate(shapes[0]) if keep or i not in axes)
        return [(out, dtypes[0])]

    def run(self, inputs, outs):
        x = inputs[0]
        axes = self._axes(x.ndim, inputs)
        if axes is None:
            return [x.copy()]
        if x.size == 0 and self.op_type in ("ReduceMax", "ReduceMin"):
            # the empty set's max/min is the identity of the reduction (ONNX: -inf / +inf, or the dtype's bound)
            big = np.inf if x.dtype.kind == "f" else (True if x.dtype == np.bool_ else np.iinfo(x.dtype).max)
            low = -np.inf if x.dtype.kind == "f" else (False if x.dtype == np.bool_ else np.iinfo(x.dtype).min)
            fn = np.max if self.op_type == "ReduceMax" else np.min
            return [fn(x, axis=axes, keepdims=bool(self.attrs["keepdims"]),
                       initial=low if self.op_type == "ReduceMax" else big).astype(x.dtype)]
        return [np.asarray(self._reduce(x, axes)).astype(x.dtype, copy=False)]
