"""Resize (opset >= 10) and Upsample: nearest, linear and cubic, along any axes, every coordinate mode
PyTorch exports (and ONNX's others but ``tf_crop_and_resize``); antialiasing fails at load.

Each resized axis is one pass: nearest gathers source indices, linear blends two gathered copies with
per-position weights (``fastpoint.ops.interpolate.linear_taps`` / ``lerp_axis``, the code behind
``fp.interpolate``). Coordinates are computed in float64 as ONNX's reference does.
"""

from __future__ import annotations

import math

import numpy as np

from .registry import Op, int_list, register

COORD_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric",
               "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def source_coords(mode: str, in_size: int, out_size: int, scale: float) -> np.ndarray:
    """ONNX's ``coordinate_transformation_mode``: the input coordinate of each output pixel."""
    x = np.arange(out_size, dtype=np.float64)
    if mode == "align_corners":
        length = scale * in_size
        return np.zeros(out_size) if length == 1 else x * (in_size - 1) / (length - 1)
    if mode == "asymmetric":
        return x / scale
    if mode == "pytorch_half_pixel":
        return np.full(out_size, -0.5) if scale * in_size == 1 else (x + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_size / 2 * (1 - out_size / (scale * in_size))
        return offset + (x + 0.5) / scale - 0.5
    return (x + 0.5) / scale  # tf_half_pixel_for_nn


def nearest_index(mode: str, coords: np.ndarray, in_size: int) -> np.ndarray:
    f = np.floor(coords)
    if mode == "round_prefer_floor":
        idx = np.where(coords - f == 0.5, f, np.floor(coords + 0.5))
    elif mode == "round_prefer_ceil":
        idx = np.floor(coords + 0.5)
    elif mode == "floor":
        idx = f
    else:
        idx = np.ceil(coords)
    return np.clip(idx, 0, in_size - 1).astype(np.intp)


def cubic_axis(x: np.ndarray, axis: int, coords: np.ndarray, n_in: int, a: float, exclude: bool) -> np.ndarray:
    """Keys' cubic convolution (coefficient ``a``) on the 4 pixels around each coordinate; pixels past
    the edge repeat the edge, or (``exclude``) get weight 0 and the others are renormalized."""
    base = np.floor(coords)
    t = (coords - base)[:, None]
    d = np.abs(np.arange(-1, 3)[None, :] - t)  # distances to the 4 taps
    w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
    w = np.where(d < 2, w, 0.0)
    idx = base.astype(np.intp)[:, None] + np.arange(-1, 3)[None, :]
    if exclude:
        w = np.where((idx >= 0) & (idx < n_in), w, 0.0)
        w /= w.sum(axis=1, keepdims=True)
    idx = np.clip(idx, 0, n_in - 1)
    shape = [1] * x.ndim
    shape[axis] = len(coords)
    y = None
    for j in range(4):
        term = np.take(x, idx[:, j], axis=axis) * w[:, j].reshape(shape)
        y = term if y is None else y + term
    return y


#: bytes of the temporaries of one block of _lerp_into (two gathered slabs): well inside L2
LERP_BLOCK_BYTES = 1 << 18


def _lerp_into(x: np.ndarray, axis: int, i0: np.ndarray, i1: np.ndarray, lam: np.ndarray, out: np.ndarray) -> None:
    """``lerp_axis`` written into ``out`` a block of output positions at a time: the same products and
    sum per element (so the same result), but temporaries of a block, not two copies of the output."""
    per_position = out.nbytes // max(lam.size, 1)
    block = max(1, LERP_BLOCK_BYTES // max(per_position, 1))
    shape = [1] * x.ndim
    for s in range(0, lam.size, block):
        sl = slice(s, min(lam.size, s + block))
        shape[axis] = sl.stop - sl.start
        w = lam[sl].reshape(shape)
        dst = out[(slice(None),) * axis + (sl,)]
        np.multiply(np.take(x, i0[sl], axis=axis), 1 - w, out=dst)
        b = np.take(x, i1[sl], axis=axis)
        b *= w
        dst += b


@register("Resize", "Upsample")
class Resize(Op):
    attributes = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode":
                  "round_prefer_floor", "cubic_coeff_a": -0.75, "exclude_outside": 0, "extrapolation_value": 0.0,
                  "antialias": 0, "axes": None, "keep_aspect_ratio_policy": "stretch", "scales": None}

    def setup(self):
        a = self.attrs
        if self.op_type == "Upsample" or self.opset < 11:
            # Upsample and Resize-10: asymmetric coordinates, nearest rounds down (as ONNX Runtime)
            a["coordinate_transformation_mode"], a["nearest_mode"] = "asymmetric", "floor"
        if a["mode"] == "bilinear":
            a["mode"] = "linear"  # Upsample-7's name
        if a["mode"] not in ("nearest", "linear", "cubic"):
            raise self.unsupported(f"mode={a['mode']!r}")
        if a["coordinate_transformation_mode"] not in COORD_MODES:
            raise self.unsupported(f"coordinate_transformation_mode={a['coordinate_transformation_mode']!r}")
        if a["nearest_mode"] not in NEAREST_MODES:
            raise self.unsupported(f"nearest_mode={a['nearest_mode']!r}")
        if a["antialias"]:
            raise self.unsupported("antialias=1")
        if a["keep_aspect_ratio_policy"] not in ("stretch", "not_larger", "not_smaller"):
            raise self.unsupported(f"keep_aspect_ratio_policy={a['keep_aspect_ratio_policy']!r}")

    def _inputs(self):
        """Indices of the scales and sizes inputs in this op version."""
        if self.op_type == "Upsample":
            return (1 if self.opset >= 9 else None), None
        if self.opset < 11:
            return 1, None
        return 2, 3

    def needs_values(self):
        return tuple(i for i in self._inputs() if i is not None and i < self.n_inputs)

    def _plan(self, shape, values):
        """Per axis: (input size, output size, scale) for the axes that change."""
        rank = len(shape)
        si, zi = self._inputs()
        axes = list(range(rank)) if self.attrs["axes"] is None else [a % rank for a in self.attrs["axes"]]
        sizes = values[zi] if zi is not None and zi < len(values) else None
        scales = values[si] if si is not None and si < len(values) else None
        if si is None and self.op_type == "Upsample":
            scales = np.asarray(self.attrs["scales"])
        policy = self.attrs["keep_aspect_ratio_policy"]
        if sizes is not None and np.asarray(sizes).size and policy != "stretch":
            # one scale for every resized axis (the smaller or larger ratio), sizes rounded half up
            ratios = [n / shape[a] for n, a in zip(int_list(sizes), axes)]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            res = [(shape[a], int(scale * shape[a] + 0.5), scale) for a in axes]
        elif sizes is not None and np.asarray(sizes).size:
            out = int_list(sizes)
            res = [(shape[a], out[i], out[i] / shape[a]) for i, a in enumerate(axes)]
        elif scales is not None and np.asarray(scales).size:
            sc = [float(v) for v in np.asarray(scales).reshape(-1)]
            res = [(shape[a], int(math.floor(shape[a] * sc[i])), sc[i]) for i, a in enumerate(axes)]
        else:
            raise ValueError(f"{self.op_type} node {self.name!r}: neither scales nor sizes given")
        return axes, res

    def _check_dtype(self, dtype) -> None:
        if dtype is not None and self.attrs["mode"] != "nearest" and dtype.kind != "f":
            raise self.unsupported(f"mode={self.attrs['mode']!r} on {dtype} (float inputs only)")

    def _known(self, shapes, values) -> bool:
        """The scales/sizes are known: each present one has a value (an omitted input has no shape either:
        PyTorch's exports give sizes and omit scales, which must not make the node dynamic)."""
        wanted = self.needs_values()
        need = [i for i in wanted if values[i] is not None or shapes[i] is not None]
        if wanted and not need:  # none visible: a run-time value of unknown shape, not an omitted one
            return False
        return shapes[0] is not None and all(values[i] is not None for i in need)

    def infer(self, shapes, dtypes, values):
        self._check_dtype(dtypes[0])
        if not self._known(shapes, values):
            return None
        axes, res = self._plan(shapes[0], values)
        out = list(shapes[0])
        for a, (_, o, _) in zip(axes, res):
            out[a] = o
        return [(tuple(out), dtypes[0])]

    writes_out = True

    def is_identity(self, shapes, values) -> bool:
        """Every axis keeps its size at scale 1 (no pass runs): the plan makes it a view."""
        if not self._known(shapes, values):
            return False
        _, res = self._plan(shapes[0], values)
        return all(n_in == n_out and scale == 1.0 for n_in, n_out, scale in res)

    def run(self, inputs, outs):
        from ..ops.interpolate import lerp_axis, linear_taps

        x = inputs[0]
        self._check_dtype(x.dtype)
        axes, res = self._plan(x.shape, inputs)
        a = self.attrs
        out = outs[0] if outs else None
        runner = self._c_runner(x, axes, res, out)
        if runner is not None:
            runner()
            return [runner.out]
        y = x
        # the last axis first: for NCHW images W then H, the order of PyTorch's own expression
        passes = [(axis, r) for axis, r in sorted(zip(axes, res), reverse=True) if not (r[0] == r[1] and r[2] == 1.0)]
        shape = list(x.shape)
        for axis, (_, n_out, _) in passes:
            shape[axis] = n_out
        out = out if out is not None else np.empty(shape, x.dtype)
        for k, (axis, (n_in, n_out, scale)) in enumerate(passes):
            coords = source_coords(a["coordinate_transformation_mode"], n_in, n_out, scale)
            if a["mode"] == "nearest":
                y = np.take(y, nearest_index(a["nearest_mode"], coords, n_in), axis=axis)
            elif a["mode"] == "cubic":
                y = cubic_axis(y, axis, coords, n_in, a["cubic_coeff_a"], bool(a["exclude_outside"]))
            elif k == len(passes) - 1:  # the last (largest) pass straight into the output, a block at a time
                _lerp_into(y, axis, *linear_taps(coords, n_in, y.dtype), out)
                return [out]
            else:  # linear (exclude_outside changes nothing: the coordinates are clamped to the image)
                y = lerp_axis(y, axis, *linear_taps(coords, n_in, y.dtype))
        np.copyto(out, y, casting="unsafe")
        return [out]

    def _c_runner(self, x, axes, res, out):
        """Both spatial axes of a float32 image, nearest or linear, in one C pass into ``out`` (a new
        array when None), bound: ``runner()`` writes ``runner.out``; None where the C loop does not
        apply. The image and ``out`` may each be NCHW or NHWC in memory (an NHWC plan's buffers): the
        loop runs along the channels when both are NHWC, along the rows otherwise."""
        from ..ops import _c
        from ..ops.interpolate import linear_taps

        a = self.attrs
        changed = sorted(ax for ax, (n_in, n_out, scale) in zip(axes, res) if not (n_in == n_out and scale == 1.0))
        if x.ndim != 4 or changed != [2, 3] or a["mode"] not in ("nearest", "linear") or x.dtype != np.float32 \
                or not _c.available():
            return None
        key = (tuple(axes), tuple(res), x.dtype)
        taps = self.__dict__.setdefault("_taps", {}).get(key)  # a graph output's Resize runs unbound: taps once
        if taps is None:
            taps = {}
            for axis, (n_in, n_out, scale) in zip(axes, res):
                coords = source_coords(a["coordinate_transformation_mode"], n_in, n_out, scale)
                taps[axis] = ((nearest_index(a["nearest_mode"], coords, n_in), None, None) if a["mode"] == "nearest"
                              else linear_taps(coords, n_in, x.dtype))
            if len(self._taps) >= 16:
                self._taps.clear()
            self._taps[key] = taps
        from .ops_conv import is_nhwc

        shape = x.shape[:2] + (len(taps[2][0]), len(taps[3][0]))
        if out is None:  # the input's memory order
            out = np.empty((shape[0], shape[2], shape[3], shape[1]), x.dtype).transpose(0, 3, 1, 2) \
                if is_nhwc(x) else np.empty(shape, x.dtype)
        nhwc = is_nhwc(out)
        y = out.transpose(0, 2, 3, 1) if nhwc else out
        if out.shape != shape or not y.flags.c_contiguous:
            return None
        xk = x.transpose(0, 2, 3, 1) if nhwc else x
        # the C arguments for these shapes and strides, made once: a graph output's Resize runs unbound
        # every call (its output is a recycled array), and making them cost ~80 us of lraspp's 8 ms
        calls = self.__dict__.setdefault("_calls", {})
        ckey = (key, xk.shape, xk.strides, y.shape, y.strides, nhwc)
        call = calls.get(ckey)
        if call is None:
            call = _c.prepare_resize2d(xk, "NHWC" if nhwc else "NCHW", taps[2], taps[3], y)
            if call is None:
                return None
            if len(calls) >= 16:
                calls.clear()
            calls[ckey] = call

        def runner() -> None:
            call(xk, y)

        runner.out = out
        return runner

    def bind(self, inputs, outs):
        """The C pass on the plan's fixed arrays, its taps and arguments made once (``Plan._program``)."""
        x = inputs[0]
        if not self._known([x.shape] + [None] * (len(inputs) - 1), [None] + list(inputs[1:])):
            return None
        axes, res = self._plan(x.shape, inputs)
        return self._c_runner(x, axes, res, outs[0])

    def kernel(self, in_shapes):
        """The C loop for 4-d nearest or linear images (float32; ``_c_runner``), else the NumPy passes."""
        from ..ops import _c

        shape = in_shapes[0] if in_shapes else None
        if shape is not None and len(shape) == 4 and self.attrs["mode"] in ("nearest", "linear") and _c.available():
            return "fp_op_resize2d_f32"
        return "numpy"

    def flops(self, in_shapes, out_shapes):
        return 3 * int(np.prod(out_shapes[0], dtype=np.int64)) if self.attrs["mode"] == "linear" else 0
