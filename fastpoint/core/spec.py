"""Argument checking and normalization.

Every public entry point turns its arguments into two small immutable descriptions, once:

* :class:`LayerSpec` - what the weight determines (channels, kernel, stride, padding rule, dilation,
  groups, layout, activation, dtype).  ``Conv2d`` builds it at construction and packs weights with it.
* :class:`ConvSpec` - a ``LayerSpec`` applied to one input shape (batch, image size, concrete padding
  per side, output size).

Backends receive these and never re-validate.  Every error raised here names the offending argument
and the shapes involved, so a user can tell what to fix without reading the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from .epilogue import Activation, parse_activation

_MAX_ELEMENTS = np.iinfo(np.intp).max // 8  # an output larger cannot be indexed in bytes (np.iinfo: 1.5 us a call)

IntOrPair = Union[int, Tuple[int, int]]
Padding = Union[int, Tuple[int, int], str]

LAYOUTS = ("NCHW", "NHWC")
ACTIVATIONS = (None, "relu")
ALGORITHMS = ("auto", "direct", "winograd")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
MAX_PARAM = 2**31 - 1  # largest stride, padding or dilation


@dataclass(frozen=True)
class LayerSpec:
    cout: int
    cin: int  # total input channels (= groups * weight.shape[1])
    kh: int
    kw: int
    stride: Tuple[int, int]
    padding: Union[str, Tuple[int, int]]  # "same", or symmetric (ph, pw)
    dilation: Tuple[int, int]
    groups: int
    layout: str
    relu: bool
    dtype: np.dtype
    algorithm: str = "auto"  # one of ALGORITHMS; "winograd" only where check_algorithm allows it
    act: Optional[Activation] = None  # an activation other than relu, fused into the store (core/epilogue.py)

    @property
    def cin_g(self) -> int:
        return self.cin // self.groups

    @property
    def cout_g(self) -> int:
        return self.cout // self.groups

    def with_dtype(self, dtype: np.dtype) -> LayerSpec:
        return LayerSpec(self.cout, self.cin, self.kh, self.kw, self.stride, self.padding,
                         self.dilation, self.groups, self.layout, self.relu, np.dtype(dtype), self.algorithm,
                         self.act)


@dataclass(frozen=True)
class ConvSpec:
    layer: LayerSpec
    n: int
    h: int
    w: int
    oh: int
    ow: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int

    @property
    def x_shape(self) -> Tuple[int, int, int, int]:
        L = self.layer
        return (self.n, L.cin, self.h, self.w) if L.layout == "NCHW" else (self.n, self.h, self.w, L.cin)

    @property
    def out_shape(self) -> Tuple[int, int, int, int]:
        L = self.layer
        return (self.n, L.cout, self.oh, self.ow) if L.layout == "NCHW" else (self.n, self.oh, self.ow, L.cout)

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 over every tap, padding taps included (the usual convention)."""
        L = self.layer
        return 2 * self.n * L.cout * self.oh * self.ow * L.cin_g * L.kh * L.kw


# --------------------------------------------------------------------------------------------------
# small validators


def _pair(name: str, value, minimum: int) -> Tuple[int, int]:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if max(pair) > MAX_PARAM:  # keeps every C index product far inside int64
        raise ValueError(f"{name} must be <= {MAX_PARAM}, got {value!r}")
    return pair


def _padding(value) -> Union[str, Tuple[int, int]]:
    if isinstance(value, str):
        if value == "valid":
            return (0, 0)
        if value == "same":
            return "same"
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {value!r}")
    return _pair("padding", value, 0)


def check_float_dtype(name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (2, 4, 8):
        raise TypeError(
            f"{name} must hold float32 or float64 values (float16 is accepted for weight/bias), "
            f"got dtype {arr.dtype} with shape {arr.shape}"
        )


def as_array(name: str, value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the user's argument
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got an object array of shape {arr.shape}")
    return arr


def check_layout(layout) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def check_activation(activation) -> bool:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    return activation == "relu"


def check_algorithm(algorithm, kh: int, kw: int, stride: Tuple[int, int], dilation: Tuple[int, int],
                    groups: int, layout: str = "NCHW") -> str:
    """``algorithm`` of a layer: "auto" and "direct" run today's kernels; "winograd" (docs/winograd.md)
    only a 3x3, stride-1, ungrouped convolution, dilation 1 or (NHWC) any, else ValueError saying which
    rule fails."""
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "winograd":
        why = []
        if (kh, kw) != (3, 3):
            why.append(f"a 3x3 kernel (weight is {kh}x{kw})")
        if stride != (1, 1):
            why.append(f"stride 1 (got stride={stride})")
        if dilation != (1, 1) and layout != "NHWC":
            why.append(f"dilation 1 in layout NCHW (got dilation={dilation}; NHWC takes any)")
        if groups != 1:
            why.append(f"groups=1 (got groups={groups})")
        if why:
            raise ValueError("algorithm='winograd' needs " + ", ".join(why))
    return algorithm


# --------------------------------------------------------------------------------------------------
# layer and call specs


def check_weight_groups(weight: np.ndarray, groups, shape: str, first: str, symbol: str, what: str = "") -> int:
    """A 4-d float weight ``shape`` with no empty dimension, and ``groups`` an int >= 1 dividing its first
    dimension (the ``first``, ``symbol``); returns groups.  Shared by conv2d and the transposed conv."""
    check_float_dtype("weight", weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must have shape {shape}{what}, got {weight.ndim}-d shape {weight.shape}")
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if min(weight.shape) < 1:
        raise ValueError(f"weight must have no empty dimension, got shape {weight.shape}")
    if weight.shape[0] % groups:
        raise ValueError(
            f"groups={groups} must divide the {first}: weight shape {weight.shape} has {symbol}={weight.shape[0]}"
        )
    return groups


def make_layer(weight: np.ndarray, stride, padding, dilation, groups, layout, activation,
               dtype: Optional[np.dtype] = None, algorithm: str = "auto") -> LayerSpec:
    """Validate everything that does not depend on the input image."""
    layout = check_layout(layout)
    groups = check_weight_groups(weight, groups, "(Cout, Cin/groups, KH, KW)", "output channels", "Cout")
    cout, cin_g, kh, kw = (int(s) for s in weight.shape)
    relu, act = parse_activation(activation, cout)
    stride = _pair("stride", stride, 1)
    dilation = _pair("dilation", dilation, 1)
    pad = _padding(padding)
    if pad == "same" and stride != (1, 1):
        raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
    algorithm = check_algorithm(algorithm, kh, kw, stride, dilation, groups, layout)
    return LayerSpec(cout, cin_g * groups, kh, kw, stride, pad, dilation, groups, layout, relu,
                     np.dtype(dtype if dtype is not None else np.float32), algorithm, act)


def make_spec(layer: LayerSpec, x_shape: Tuple[int, ...], w_shape: Tuple[int, ...]) -> ConvSpec:
    """Apply a layer to an input shape (4-d, already in ``layer.layout``)."""
    if layer.layout == "NCHW":
        n, c, h, w = x_shape
        hint = "(N, C, H, W) or (C, H, W)"
    else:
        n, h, w, c = x_shape
        hint = "(N, H, W, C) or (H, W, C)"
    if c != layer.cin:
        raise ValueError(
            f"x has {c} channels (shape {tuple(x_shape)}, layout {layer.layout} {hint}) but weight "
            f"shape {tuple(w_shape)} with groups={layer.groups} expects {layer.cin}"
        )
    dh, dw = layer.dilation
    eff_h, eff_w = dh * (layer.kh - 1) + 1, dw * (layer.kw - 1) + 1
    if layer.padding == "same":
        th, tw = eff_h - 1, eff_w - 1
        pt, pl = th // 2, tw // 2
        pb, pr = th - pt, tw - pl
    else:
        pt = pb = layer.padding[0]
        pl = pr = layer.padding[1]
    sh, sw = layer.stride
    ph_total, pw_total = h + pt + pb, w + pl + pr
    if ph_total < eff_h or pw_total < eff_w:
        raise ValueError(
            f"kernel {layer.kh}x{layer.kw} with dilation {layer.dilation} spans {eff_h}x{eff_w}, larger than "
            f"the padded input {ph_total}x{pw_total} (x shape {tuple(x_shape)}, padding {layer.padding})"
        )
    oh = (ph_total - eff_h) // sh + 1
    ow = (pw_total - eff_w) // sw + 1
    if max(n, 1) * layer.cout * oh * ow > _MAX_ELEMENTS:
        raise ValueError(f"the output ({n}, {layer.cout}, {oh}, {ow}) would have more elements than an array can "
                         f"hold (x shape {tuple(x_shape)}, padding {layer.padding}, stride {layer.stride})")
    return ConvSpec(layer, int(n), int(h), int(w), oh, ow, pt, pb, pl, pr)


def c_array(arr: np.ndarray, dtype=None) -> np.ndarray:
    """``arr`` as a C-contiguous array whose elements are aligned to their size (copied if needed).

    ``np.ascontiguousarray`` alone passes through a contiguous array at an odd address (e.g. from
    ``np.frombuffer(..., offset=4)``); compiled kernels may assume element alignment, so copy it.
    """
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return arr if arr.flags.aligned else arr.copy()


def prepare_input(x, layer: LayerSpec) -> Tuple[np.ndarray, bool]:
    """Return x as a C-contiguous 4-d array of a supported dtype, and whether it was batched."""
    x = as_array("x", x)
    check_float_dtype("x", x)
    if x.dtype not in DTYPES:
        raise TypeError(f"x must be float32 or float64, got {x.dtype} with shape {x.shape}")
    if x.ndim == 3:
        batched = False
        x = x[None]
    elif x.ndim == 4:
        batched = True
    else:
        shape = "(N, C, H, W) or (C, H, W)" if layer.layout == "NCHW" else "(N, H, W, C) or (H, W, C)"
        raise ValueError(f"x must be {shape} for layout {layer.layout}, got {x.ndim}-d shape {x.shape}")
    return c_array(x), batched


def prepare_param(name: str, arr, dtype: np.dtype, shape: Tuple[int, ...]) -> np.ndarray:
    arr = as_array(name, arr)
    check_float_dtype(name, arr)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return c_array(arr, dtype)


#: np.exceptions exists from NumPy 1.25 on; older releases have the class at the top level only
_TooHardError = getattr(np, "exceptions", np).TooHardError


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=100_000))
    except _TooHardError:
        return True


def check_out(out, spec: ConvSpec, dtype: np.dtype, batched: bool, inputs) -> np.ndarray:
    """Validate a user-provided output array; return it as a 4-d view."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    shape = spec.out_shape if batched else spec.out_shape[1:]
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype} (the input's), got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"out must be writable (shape {out.shape})")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous, got strides {out.strides} for shape {out.shape}")
    if not out.flags.aligned:
        raise ValueError(f"out must be aligned to its {out.dtype} elements, got address {out.ctypes.data:#x} "
                         f"for shape {out.shape}")
    for name, arr in inputs:
        if arr is not None and _overlaps(out, arr):
            raise ValueError(f"out (shape {out.shape}) overlaps {name} (shape {arr.shape}); pass a separate array")
    return out if batched else out[None]
