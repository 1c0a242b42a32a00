"""Shape arithmetic and data movement: the ops PyTorch's exporter emits around Reshape and Resize.

When their inputs are known at plan time (initializers, ``Shape`` of a tensor whose shape the plan
knows) the planner runs them once and keeps the result as a constant: that is the folding of shape
subgraphs. They also run at run time on any input, for graphs whose shapes depend on their inputs.
"""

from __future__ import annotations

from typing import List

import numpy as np

from .registry import REQUIRED, Op, deliver, int_list, normalize_axis, register

# TensorProto data type -> NumPy (the types fastpoint runs; others fail at load)
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


NATIVE_DTYPES = frozenset(np.dtype(t) for t in ONNX_DTYPES.values())


def onnx_dtype(op: Op, code: int) -> np.dtype:
    if code not in ONNX_DTYPES:
        raise op.unsupported(f"data type {code} (TensorProto enum)")
    return np.dtype(ONNX_DTYPES[code])


def _ints(x) -> List[int]:
    return int_list(x)


class ViewOp(Op):
    """An op whose output is input 0 reshaped: a view, no copy (the plan extends input 0's life)."""

    flops_per_output = 0
    view_of_input = True

    def out_shape(self, shape, values):
        raise NotImplementedError

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or any(values[i] is None for i in self.needs_values() if i < len(values)):
            return None
        return [(tuple(self.out_shape(shapes[0], values)), dtypes[0])]

    def run(self, inputs, outs):
        x = inputs[0]
        shape = tuple(self.out_shape(x.shape, inputs))
        return [np.ascontiguousarray(x).reshape(shape)] + [None] * (self.n_outputs - 1)


@register("Identity")
class Identity(ViewOp):
    def out_shape(self, shape, values):
        return shape

    def run(self, inputs, outs):
        """The input itself, in its memory order (an NHWC plan's buffer stays NHWC: the plan's storage of the
        output is the input's, layout included, so a consumer that wants NCHW gets its copy planned)."""
        return [inputs[0]]


@register("Dropout")
class Dropout(ViewOp):
    """Inference: the identity (``ratio`` and ``training_mode`` inputs are ignored unless training)."""

    attributes = {"seed": 0, "ratio": 0.5, "is_test": 1}

    def out_shape(self, shape, values):
        if len(values) > 2 and values[2] is not None and bool(np.asarray(values[2])):
            raise self.unsupported("training_mode=True")
        return shape

    def infer(self, shapes, dtypes, values):
        res = super().infer(shapes, dtypes, values)
        if res is not None and self.n_outputs > 1:
            res.append((shapes[0], np.dtype(np.bool_)))
        return res

    def run(self, inputs, outs):
        res = super().run(inputs, outs)
        if self.n_outputs > 1:
            res[1] = np.ones(inputs[0].shape, np.bool_)
        return res


@register("Reshape")
class Reshape(ViewOp):
    attributes = {"allowzero": 0, "shape": None}

    def needs_values(self):
        return (1,) if self.opset >= 5 else ()

    def out_shape(self, shape, values):
        target = _ints(values[1] if self.opset >= 5 else self.attrs["shape"])
        if not self.attrs["allowzero"]:
            target = [shape[i] if t == 0 else t for i, t in enumerate(target)]
        if -1 in target:
            known = int(np.prod([t for t in target if t != -1], dtype=np.int64))
            total = int(np.prod(shape, dtype=np.int64))
            target[target.index(-1)] = total // known if known else 0
        if int(np.prod(target, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"Reshape node {self.name!r}: cannot reshape {tuple(shape)} to {tuple(target)}")
        return target


@register("Flatten")
class Flatten(ViewOp):
    attributes = {"axis": 1}

    def out_shape(self, shape, values):
        axis = self.attrs["axis"] + len(shape) if self.attrs["axis"] < 0 else self.attrs["axis"]
        return (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))


def _axes_input(op: Op, values) -> List[int]:
    if op.opset >= 13:
        return None if len(values) < 2 or values[1] is None else _ints(values[1])
    return op.attrs["axes"]


@register("Squeeze")
class Squeeze(ViewOp):
    attributes = {"axes": None}

    def needs_values(self):
        return (1,) if self.opset >= 13 and self.n_inputs > 1 else ()

    def out_shape(self, shape, values):
        axes = _axes_input(self, values)
        if axes is None:
            return tuple(d for d in shape if d != 1)
        axes = {normalize_axis(self, a, len(shape)) for a in axes}
        return tuple(d for i, d in enumerate(shape) if i not in axes)


@register("Unsqueeze")
class Unsqueeze(ViewOp):
    attributes = {"axes": None}

    def needs_values(self):
        return (1,) if self.opset >= 13 else ()

    def out_shape(self, shape, values):
        axes = _axes_input(self, values)
        rank = len(shape) + len(axes)
        axes = sorted(normalize_axis(self, a, rank) for a in axes)
        out = list(shape)
        for a in axes:
            out.insert(a, 1)
        return tuple(out)


@register("Shape")
class ShapeOp(Op):
    """The input's shape as int64 (folded whenever the plan knows the shape)."""

    flops_per_output = 0
    attributes = {"start": 0, "end": None}
    fold_from_shapes = True

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None:
            return None
        return [((len(self._dims(shapes[0])),), np.dtype(np.int64))]

    def _dims(self, shape):
        end = self.attrs["end"]
        return shape[self.attrs["start"]:end] if end is not None else shape[self.attrs["start"]:]

    def run(self, inputs, outs):
        return [np.array(self._dims(inputs[0].shape), dtype=np.int64)]


@register("Size")
class Size(ShapeOp):
    attributes = {}

    def infer(self, shapes, dtypes, values):
        return None if shapes[0] is None else [((), np.dtype(np.int64))]

    def run(self, inputs, outs):
        return [np.array(inputs[0].size, dtype=np.int64)]


@register("Constant")
class Constant(Op):
    attributes = {"value": None, "value_float": None, "value_floats": None, "value_int": None,
                  "value_ints": None}

    def setup(self):
        a = self.attrs
        if a["value"] is not None:
            self.value = np.asarray(a["value"])
        elif a["value_float"] is not None:
            self.value = np.array(a["value_float"], np.float32)
        elif a["value_floats"] is not None:
            self.value = np.array(a["value_floats"], np.float32)
        elif a["value_int"] is not None:
            self.value = np.array(a["value_int"], np.int64)
        elif a["value_ints"] is not None:
            self.value = np.array(a["value_ints"], np.int64)
        else:
            raise self.unsupported("a Constant without value")

    def infer(self, shapes, dtypes, values):
        return [(self.value.shape, self.value.dtype)]

    def run(self, inputs, outs):
        return [self.value]


@register("ConstantOfShape")
class ConstantOfShape(Op):
    attributes = {"value": None}

    def setup(self):
        v = self.attrs["value"]
        self.value = np.zeros((), np.float32) if v is None else np.asarray(v).reshape(())

    def needs_values(self):
        return (0,)

    def infer(self, shapes, dtypes, values):
        return None if values[0] is None else [(tuple(_ints(values[0])), self.value.dtype)]

    def run(self, inputs, outs):
        return [np.full(tuple(_ints(inputs[0])), self.value, dtype=self.value.dtype)]


@register("Cast")
class Cast(Op):
    attributes = {"to": REQUIRED, "saturate": 1}
    writes_out = True

    def setup(self):
        self.dtype = onnx_dtype(self, self.attrs["to"])

    def infer(self, shapes, dtypes, values):
        if dtypes[0] is not None and dtypes[0] not in NATIVE_DTYPES:
            raise self.unsupported(f"input dtype {dtypes[0]}")
        return None if shapes[0] is None else [(shapes[0], self.dtype)]

    def run(self, inputs, outs):
        x = inputs[0]
        if x.dtype not in NATIVE_DTYPES:
            raise self.unsupported(f"input dtype {x.dtype}")
        out = outs[0] if outs else np.empty(x.shape, self.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            np.copyto(out, x, casting="unsafe")
        return [out]


@register("Gather")
class Gather(Op):
    attributes = {"axis": 0}
    writes_out = True

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or shapes[1] is None:
            return None
        axis = normalize_axis(self, self.attrs["axis"], len(shapes[0]))
        return [(shapes[0][:axis] + shapes[1] + shapes[0][axis + 1:], dtypes[0])]

    def run(self, inputs, outs):
        data, idx = inputs
        axis = normalize_axis(self, self.attrs["axis"], data.ndim)
        idx = np.where(idx < 0, idx + data.shape[axis], idx)
        res = np.take(data, idx, axis=axis)
        return deliver(res, outs)


@register("Slice")
class Slice(Op):
    """``starts``, ``ends``, ``axes``, ``steps`` as inputs (opset >= 10) or attributes (before)."""

    flops_per_output = 0
    attributes = {"starts": None, "ends": None, "axes": None}
    writes_out = True

    def needs_values(self):
        return tuple(range(1, self.n_inputs))

    def _index(self, rank, values):
        if self.opset >= 10:
            starts, ends = _ints(values[1]), _ints(values[2])
            axes = _ints(values[3]) if len(values) > 3 and values[3] is not None else list(range(len(starts)))
            steps = _ints(values[4]) if len(values) > 4 and values[4] is not None else [1] * len(starts)
        else:
            starts, ends = self.attrs["starts"], self.attrs["ends"]
            axes = self.attrs["axes"] or list(range(len(starts)))
            steps = [1] * len(starts)
        index = [slice(None)] * rank
        for s, e, a, st in zip(starts, ends, axes, steps):
            if st == 0:
                raise ValueError(f"Slice node {self.name!r}: step 0")
            index[normalize_axis(self, a, rank)] = slice(s, e, st)
        return tuple(index)

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or any(values[i] is None for i in self.needs_values()):
            return None
        dummy = np.lib.stride_tricks.as_strided(np.zeros(1, dtypes[0]), shapes[0], (0,) * len(shapes[0]))
        return [(dummy[self._index(len(shapes[0]), values)].shape, dtypes[0])]

    def run(self, inputs, outs):
        res = inputs[0][self._index(inputs[0].ndim, inputs)]
        return deliver(res, outs)


@register("Concat")
class Concat(Op):
    flops_per_output = 0
    attributes = {"axis": REQUIRED}
    writes_out = True

    def infer(self, shapes, dtypes, values):
        if any(s is None for s in shapes):
            return None
        axis = normalize_axis(self, self.attrs["axis"], len(shapes[0]))
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return [(tuple(out), dtypes[0])]

    def run(self, inputs, outs):
        axis = normalize_axis(self, self.attrs["axis"], inputs[0].ndim)
        if not outs:
            return [np.concatenate(inputs, axis=axis)]
        out, start = outs[0], 0
        for x in inputs:  # an input its producer wrote into its slice already (the plan's concat in place) stays
            part = out[(slice(None),) * axis + (slice(start, start + x.shape[axis]),)]
            start += x.shape[axis]
            if not (x.ctypes.data == part.ctypes.data and x.dtype == part.dtype and _same_strides(x, part)):
                np.copyto(part, x)
        return [out]

    def bind(self, inputs, outs):
        """The prebound program's Concat: the copies of the inputs not already in their slice (Plan's concat
        in place), decided once on the thread's fixed arrays; no copy at all where the producers filled it."""
        axis = normalize_axis(self, self.attrs["axis"], inputs[0].ndim)
        out, start, copies = outs[0], 0, []
        for x in inputs:
            part = out[(slice(None),) * axis + (slice(start, start + x.shape[axis]),)]
            start += x.shape[axis]
            if not (x.ctypes.data == part.ctypes.data and x.dtype == part.dtype and _same_strides(x, part)):
                copies.append((part, x))

        def run(_copies=tuple(copies)) -> None:
            for part, x in _copies:
                np.copyto(part, x)

        return run


def _same_strides(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape and the same strides along every axis longer than 1 (a length-1 axis's stride is never
    used: batch 1's differs between an input and its slice of the Concat buffer), so the same elements."""
    return a.shape == b.shape and all(n == 1 or sa == sb for n, sa, sb in zip(a.shape, a.strides, b.strides))


@register("Split")
class Split(Op):
    attributes = {"axis": 0, "split": None, "num_outputs": None}

    def needs_values(self):
        return (1,) if self.opset >= 13 and self.n_inputs > 1 else ()

    def _sizes(self, shape, values):
        axis = normalize_axis(self, self.attrs["axis"], len(shape))
        split = self.attrs["split"]
        if self.opset >= 13 and len(values) > 1 and values[1] is not None:
            split = _ints(values[1])
        if split is None:
            n = self.attrs["num_outputs"] or self.n_outputs
            chunk = -(-shape[axis] // n)
            split = [min(chunk, shape[axis] - i * chunk) for i in range(n)]
        return axis, split

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or any(values[i] is None for i in self.needs_values()):
            return None
        axis, split = self._sizes(shapes[0], values)
        return [(shapes[0][:axis] + (s,) + shapes[0][axis + 1:], dtypes[0]) for s in split]

    def run(self, inputs, outs):
        axis, split = self._sizes(inputs[0].shape, inputs)
        parts = np.split(inputs[0], np.cumsum(split)[:-1], axis=axis)
        return [np.ascontiguousarray(p) for p in parts]


@register("Transpose")
class Transpose(Op):
    flops_per_output = 0
    attributes = {"perm": None}
    writes_out = True

    def _perm(self, rank):
        return self.attrs["perm"] if self.attrs["perm"] is not None else list(range(rank))[::-1]

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None:
            return None
        return [(tuple(shapes[0][p] for p in self._perm(len(shapes[0]))), dtypes[0])]

    def run(self, inputs, outs):
        res = inputs[0].transpose(self._perm(inputs[0].ndim))
        return deliver(res, outs)


@register("Range")
class Range(Op):
    def needs_values(self):
        return (0, 1, 2)

    def _values(self, start, limit, delta):
        start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
        n = max(int(np.ceil((limit.astype(np.float64) - start) / delta)), 0)
        return (start + delta * np.arange(n)).astype(start.dtype)

    def infer(self, shapes, dtypes, values):
        if any(v is None for v in values):
            return None
        return [(self._values(*values).shape, dtypes[0])]

    def run(self, inputs, outs):
        return [self._values(*inputs)]


@register("Expand")
class Expand(Op):
    writes_out = True

    def needs_values(self):
        return (1,)

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or values[1] is None:
            return None
        return [(tuple(np.broadcast_shapes(shapes[0], tuple(_ints(values[1])))), dtypes[0])]

    def run(self, inputs, outs):
        shape = np.broadcast_shapes(inputs[0].shape, tuple(_ints(inputs[1])))
        out = outs[0] if outs else np.empty(shape, inputs[0].dtype)
        np.copyto(out, np.broadcast_to(inputs[0], shape))
        return [out]


@register("Tile")
class Tile(Op):
    def needs_values(self):
        return (1,)

    def infer(self, shapes, dtypes, values):
        if shapes[0] is None or values[1] is None:
            return None
        return [(tuple(d * r for d, r in zip(shapes[0], _ints(values[1]))), dtypes[0])]

    def run(self, inputs, outs):
        return [np.tile(inputs[0], _ints(inputs[1]))]
