"""Bad arguments, one per class, run in a child process by tests/test_invalid_subprocess.py.

Each case is ``(name, overrides, exception, words)``: ``overrides`` replace keyword arguments of a
valid call (x (1, 4, 8, 8) float32, weight (6, 4, 3, 3)); the call must raise ``exception`` with
every word of ``words`` in its message.  ``exception`` None marks an edge case that is valid and
must equal the reference.  Run as a script, this module executes the cases from a start index and
prints one JSON line per (case, backend, entry point), flushing before each so that a crash of the
process names the case that caused it.
"""
from __future__ import annotations

import json
import sys

import numpy as np

X = np.zeros((1, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)
OUT_SHAPE = (1, 6, 6, 6)


def _readonly(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _unaligned(shape, dtype=np.float32):
    raw = np.zeros(int(np.prod(shape)) * np.dtype(dtype).itemsize + 1, np.uint8)
    return raw[1:].view(dtype).reshape(shape)


def _overlap(which):
    buf = np.zeros(10_000, np.float32)
    out = buf[:216].reshape(OUT_SHAPE)
    if which == "x":
        return dict(x=buf[100:356].reshape(1, 4, 8, 8), out=out)
    if which == "weight":
        return dict(weight=buf[:216].reshape(6, 4, 3, 3), out=out)
    return dict(bias=buf[10:16], out=out)


def _cases():
    f32 = np.float32
    return [
        # wrong number of dimensions
        ("x 1-d", dict(x=np.zeros(8, f32)), ValueError, ["x", "(8,)"]),
        ("x 2-d", dict(x=np.zeros((8, 8), f32)), ValueError, ["x", "(8, 8)"]),
        ("x 5-d", dict(x=np.zeros((1, 1, 4, 8, 8), f32)), ValueError, ["x"]),
        ("x 0-d", dict(x=np.float32(1)), ValueError, ["x"]),
        ("weight 2-d", dict(weight=np.zeros((6, 4), f32)), ValueError, ["weight", "(6, 4)"]),
        ("weight 3-d", dict(weight=np.zeros((6, 4, 3), f32)), ValueError, ["weight", "(6, 4, 3)"]),
        ("weight 5-d", dict(weight=np.zeros((6, 4, 3, 3, 1), f32)), ValueError, ["weight"]),
        ("bias 2-d", dict(bias=np.zeros((6, 1), f32)), ValueError, ["bias", "(6, 1)"]),
        ("bias scalar", dict(bias=np.float32(0)), ValueError, ["bias"]),
        # channels and groups
        ("channel mismatch", dict(weight=np.zeros((6, 3, 3, 3), f32)), ValueError, ["channels", "(6, 3, 3, 3)"]),
        ("groups mismatch", dict(weight=np.zeros((6, 2, 3, 3), f32), groups=3), ValueError, ["channels"]),
        ("groups not dividing cout", dict(weight=np.zeros((5, 2, 3, 3), f32), groups=2), ValueError, ["groups"]),
        ("groups zero", dict(groups=0), ValueError, ["groups"]),
        ("groups negative", dict(groups=-2), ValueError, ["groups"]),
        ("groups float", dict(groups=2.0), TypeError, ["groups"]),
        ("groups bool", dict(groups=True), TypeError, ["groups"]),
        ("groups huge", dict(groups=2**64), ValueError, ["groups"]),
        ("weight empty cout", dict(weight=np.zeros((0, 4, 3, 3), f32)), ValueError, ["weight"]),
        ("weight empty kernel", dict(weight=np.zeros((6, 4, 0, 3), f32)), ValueError, ["weight"]),
        ("x zero channels", dict(x=np.zeros((1, 0, 8, 8), f32)), ValueError, ["channels"]),
        # stride, dilation, padding
        ("stride zero", dict(stride=0), ValueError, ["stride"]),
        ("stride negative", dict(stride=-1), ValueError, ["stride"]),
        ("stride negative pair", dict(stride=(1, -1)), ValueError, ["stride"]),
        ("stride triple", dict(stride=(1, 1, 1)), TypeError, ["stride"]),
        ("stride float", dict(stride=1.0), TypeError, ["stride"]),
        ("stride str", dict(stride="1"), TypeError, ["stride"]),
        ("stride None", dict(stride=None), TypeError, ["stride"]),
        ("stride huge", dict(stride=2**63), ValueError, ["stride"]),
        ("stride beyond uint64", dict(stride=2**80), ValueError, ["stride"]),
        ("dilation zero", dict(dilation=0), ValueError, ["dilation"]),
        ("dilation negative pair", dict(dilation=(-1, 1)), ValueError, ["dilation"]),
        ("dilation huge", dict(dilation=2**63), ValueError, ["dilation"]),
        ("padding negative", dict(padding=-1), ValueError, ["padding"]),
        ("padding negative pair", dict(padding=(0, -2)), ValueError, ["padding"]),
        ("padding float", dict(padding=0.5), TypeError, ["padding"]),
        ("padding bool", dict(padding=False), TypeError, ["padding"]),
        ("padding 1-tuple", dict(padding=(1,)), TypeError, ["padding"]),
        ("padding 4-tuple", dict(padding=(1, 1, 1, 1)), TypeError, ["padding"]),
        ("padding word", dict(padding="full"), ValueError, ["padding", "full"]),
        ("padding word case", dict(padding="SAME"), ValueError, ["padding", "SAME"]),
        ("padding huge", dict(padding=2**40), ValueError, ["padding"]),
        ("padding output too big", dict(padding=2**31 - 1), ValueError, ["output", "padding"]),
        ("same with stride", dict(padding="same", stride=2), ValueError, ["same", "stride"]),
        ("same with stride pair", dict(padding="same", stride=(1, 2)), ValueError, ["same", "stride"]),
        ("kernel larger than input", dict(weight=np.zeros((6, 4, 9, 9), f32)), ValueError, ["kernel", "9x9"]),
        ("kernel taller than input", dict(weight=np.zeros((6, 4, 9, 1), f32)), ValueError, ["kernel"]),
        ("dilated kernel too large", dict(dilation=4), ValueError, ["kernel", "dilation"]),
        ("x empty image", dict(x=np.zeros((1, 4, 0, 8), f32)), ValueError, ["kernel"]),
        # dtypes
        ("x int32", dict(x=X.astype(np.int32)), TypeError, ["x", "int32"]),
        ("x uint8", dict(x=X.astype(np.uint8)), TypeError, ["x", "uint8"]),
        ("x bool", dict(x=X.astype(bool)), TypeError, ["x", "bool"]),
        ("x complex64", dict(x=X.astype(np.complex64)), TypeError, ["x", "complex"]),
        ("x complex128", dict(x=X.astype(np.complex128)), TypeError, ["x", "complex"]),
        ("x float16", dict(x=X.astype(np.float16)), TypeError, ["x", "float16"]),
        ("x longdouble", dict(x=X.astype(np.longdouble)), TypeError, ["x"]),
        ("x object", dict(x=X.astype(object)), TypeError, ["x"]),
        ("x str", dict(x=np.full((1, 4, 8, 8), "a")), TypeError, ["x"]),
        ("x datetime", dict(x=np.zeros((1, 4, 8, 8), "datetime64[s]")), TypeError, ["x"]),
        ("x structured", dict(x=np.zeros((1, 4, 8, 8), [("a", f32)])), TypeError, ["x"]),
        ("x None", dict(x=None), TypeError, ["x"]),
        ("x string", dict(x="image"), TypeError, ["x"]),
        ("x ragged list", dict(x=[[1.0, 2.0], [3.0]]), TypeError, ["x"]),
        ("weight int64", dict(weight=W.astype(np.int64)), TypeError, ["weight", "int64"]),
        ("weight complex", dict(weight=W.astype(np.complex64)), TypeError, ["weight", "complex"]),
        ("weight object", dict(weight=W.astype(object)), TypeError, ["weight"]),
        ("weight bool", dict(weight=W.astype(bool)), TypeError, ["weight", "bool"]),
        ("weight None", dict(weight=None), TypeError, ["weight"]),
        ("bias int32", dict(bias=np.zeros(6, np.int32)), TypeError, ["bias", "int32"]),
        ("bias complex", dict(bias=np.zeros(6, np.complex128)), TypeError, ["bias", "complex"]),
        ("bias object", dict(bias=np.zeros(6, object)), TypeError, ["bias"]),
        # bias and out
        ("bias shape", dict(bias=np.zeros(5, f32)), ValueError, ["bias", "(5,)"]),
        ("bias empty", dict(bias=np.zeros(0, f32)), ValueError, ["bias"]),
        ("out shape", dict(out=np.zeros((1, 6, 7, 7), f32)), ValueError, ["out", "(1, 6, 6, 6)"]),
        ("out unbatched shape for batched x", dict(out=np.zeros((6, 6, 6), f32)), ValueError, ["out"]),
        ("out dtype", dict(out=np.zeros(OUT_SHAPE, np.float64)), TypeError, ["out", "float64"]),
        ("out int dtype", dict(out=np.zeros(OUT_SHAPE, np.int32)), TypeError, ["out", "int32"]),
        ("out list", dict(out=[0.0]), TypeError, ["out"]),
        ("out readonly", dict(out=_readonly(OUT_SHAPE)), ValueError, ["out", "writable"]),
        ("out not contiguous", dict(out=np.zeros((1, 6, 6, 12), f32)[..., ::2]), ValueError, ["out", "contiguous"]),
        ("out fortran", dict(out=np.asfortranarray(np.zeros(OUT_SHAPE, f32))), ValueError, ["out", "contiguous"]),
        ("out negative strides", dict(out=np.zeros(OUT_SHAPE, f32)[..., ::-1]), ValueError, ["out", "contiguous"]),
        ("out unaligned", dict(out=_unaligned(OUT_SHAPE)), ValueError, ["out", "aligned"]),
        ("out overlaps x", _overlap("x"), ValueError, ["out", "overlaps x"]),
        ("out overlaps weight", _overlap("weight"), ValueError, ["out", "overlaps weight"]),
        ("out overlaps bias", _overlap("bias"), ValueError, ["out", "overlaps bias"]),
        ("out is x", dict(x=np.zeros((1, 6, 6, 6), f32), weight=np.zeros((6, 6, 1, 1), f32), out="x"),
         ValueError, ["out", "overlaps x"]),
        # words
        ("activation unknown", dict(activation="gelu"), ValueError, ["activation", "gelu"]),
        ("activation case", dict(activation="ReLU"), ValueError, ["activation", "ReLU"]),
        ("activation callable", dict(activation=abs), ValueError, ["activation"]),
        ("layout unknown", dict(layout="CHWN"), ValueError, ["layout", "CHWN"]),
        ("layout lower case", dict(layout="nchw"), ValueError, ["layout", "nchw"]),
        ("layout None", dict(layout=None), ValueError, ["layout"]),
        ("layout NHWC channel mismatch", dict(layout="NHWC"), ValueError, ["channels", "NHWC"]),
        ("backend unknown", dict(backend="cuda"), ValueError, ["backend", "cuda", "numpy"]),
        ("backend None", dict(backend=None), ValueError, ["backend"]),
        # valid edge cases: must not crash, must equal the reference
        ("edge batch 0", dict(x=np.zeros((0, 4, 8, 8), f32)), None, []),
        ("edge empty rows with padding", dict(x=np.zeros((1, 4, 0, 8), f32), padding=2), None, []),
        ("edge empty cols with padding", dict(x=np.zeros((2, 4, 8, 0), f32), padding=(0, 2),
                                              weight=np.ones((6, 4, 1, 3), f32)), None, []),
        ("edge 1x1 image 3x3 kernel", dict(x=np.ones((1, 4, 1, 1), f32), padding=1), None, []),
        ("edge stride larger than image", dict(stride=100), None, []),
        ("edge dilation fills padded input", dict(x=np.ones((1, 4, 3, 3), f32), padding=1, dilation=2), None, []),
        ("edge huge stride", dict(stride=2**31 - 1, padding=5), None, []),
        ("edge out with NaN", dict(out=np.full(OUT_SHAPE, np.nan, f32)), None, []),
        ("edge list input", dict(x=np.ones((1, 4, 3, 3)).tolist(), weight=np.ones((2, 4, 1, 1))), None, []),
        ("edge float16 weight", dict(weight=np.ones((6, 4, 3, 3), np.float16)), None, []),
        ("edge read-only inputs", dict(x=_readonly((1, 4, 8, 8)), weight=_readonly((6, 4, 3, 3))), None, []),
    ]


CASES = _cases()
NAMES = [c[0] for c in CASES]
# "Conv2d again": the layer's second call, after a valid call on an input of the same shape (the call
# plan of fastpoint/core/callplan.py exists then, so the case goes through its fast checks first)
ENTRIES = ("conv2d", "Conv2d", "Conv2d again")


def _call(fp, entry: str, backend: str, overrides: dict):
    args = dict(x=X, weight=W, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None,
                layout="NCHW", backend=backend, out=None)
    args.update(overrides)
    if isinstance(args["out"], str):
        args["out"] = args[args["out"]]
    x, out = args.pop("x"), args.pop("out")
    if entry == "conv2d":
        return fp.conv2d(x, **args, out=out)
    weight, bias = args.pop("weight"), args.pop("bias")
    layer = fp.Conv2d(weight, bias, **args)
    if entry == "Conv2d again":
        try:
            layer(np.zeros(np.shape(x), getattr(x, "dtype", np.float32)))
        except Exception:  # noqa: BLE001 - no valid call of this shape: the case runs as a first call
            pass
    return layer(x, out=out)


def _one(fp, entry: str, backend: str, overrides: dict, exc, words) -> dict:
    try:
        got = _call(fp, entry, backend, overrides)
    except Exception as e:  # noqa: BLE001 - the point is to classify whatever is raised
        if exc is None:
            return {"ok": False, "why": f"valid edge case raised {type(e).__name__}: {e}"}
        msg = str(e)
        if not isinstance(e, exc):
            return {"ok": False, "why": f"raised {type(e).__name__} ({msg}), expected {exc.__name__}"}
        missing = [w for w in words if w not in msg]
        return {"ok": not missing, "why": f"message {msg!r} lacks {missing}" if missing else ""}
    if exc is not None:
        return {"ok": False, "why": f"no exception (expected {exc.__name__})"}
    expected = _call(fp, "conv2d", "numpy", {k: v for k, v in overrides.items() if k != "out"})
    same = np.array_equal(np.asarray(got), expected)
    return {"ok": same, "why": "" if same else "differs from the numpy reference"}


def main(start: int) -> None:
    import fastpoint as fp

    for index in range(start, len(CASES)):
        name, overrides, exc, words = CASES[index]
        for backend in fp.backends():
            for entry in ENTRIES:
                # announce first: if the process dies, the parent knows which case killed it
                print(json.dumps({"start": index, "backend": backend, "entry": entry}), flush=True)
                result = _one(fp, entry, backend, overrides, exc, words)
                print(json.dumps({"index": index, "backend": backend, "entry": entry, **result}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
