"""Every class of invalid argument raises ValueError/TypeError naming the argument, on every backend."""
import numpy as np
import pytest

import fastpoint as fp

X = np.zeros((1, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)

CASES = [
    # (description, kwargs for conv2d, exception, words the message must contain)
    ("x 2-d", dict(x=np.zeros((8, 8), np.float32)), ValueError, ["x", "(8, 8)"]),
    ("x 5-d", dict(x=np.zeros((1, 1, 4, 8, 8), np.float32)), ValueError, ["x"]),
    ("x int", dict(x=X.astype(np.int32)), TypeError, ["x", "int32"]),
    ("x bool", dict(x=X.astype(bool)), TypeError, ["x", "bool"]),
    ("x complex", dict(x=X.astype(np.complex64)), TypeError, ["x", "complex"]),
    ("x float16", dict(x=X.astype(np.float16)), TypeError, ["x", "float16"]),
    ("x object", dict(x=X.astype(object)), TypeError, ["x"]),
    ("x None", dict(x=None), TypeError, ["x"]),
    ("weight 3-d", dict(weight=np.zeros((6, 4, 3), np.float32)), ValueError, ["weight", "(6, 4, 3)"]),
    ("weight int", dict(weight=W.astype(np.int64)), TypeError, ["weight", "int64"]),
    ("weight empty", dict(weight=np.zeros((0, 4, 3, 3), np.float32)), ValueError, ["weight"]),
    ("channel mismatch", dict(weight=np.zeros((6, 3, 3, 3), np.float32)), ValueError, ["channels", "(6, 3, 3, 3)"]),
    ("groups mismatch", dict(weight=np.zeros((6, 2, 3, 3), np.float32), groups=3), ValueError, ["channels"]),
    ("groups not dividing cout", dict(weight=np.zeros((5, 2, 3, 3), np.float32), groups=2), ValueError, ["groups"]),
    ("groups zero", dict(groups=0), ValueError, ["groups"]),
    ("groups float", dict(groups=1.5), TypeError, ["groups"]),
    ("stride zero", dict(stride=0), ValueError, ["stride"]),
    ("stride negative pair", dict(stride=(1, -1)), ValueError, ["stride"]),
    ("stride triple", dict(stride=(1, 1, 1)), TypeError, ["stride"]),
    ("stride float", dict(stride=1.0), TypeError, ["stride"]),
    ("dilation zero", dict(dilation=0), ValueError, ["dilation"]),
    ("padding negative", dict(padding=-1), ValueError, ["padding"]),
    ("padding word", dict(padding="full"), ValueError, ["padding", "full"]),
    ("same with stride", dict(padding="same", stride=2), ValueError, ["same", "stride"]),
    ("kernel larger than input", dict(weight=np.zeros((6, 4, 9, 9), np.float32)), ValueError, ["kernel", "9x9"]),
    ("dilated kernel too large", dict(dilation=4), ValueError, ["kernel", "dilation"]),
    ("bias shape", dict(bias=np.zeros(5, np.float32)), ValueError, ["bias", "(5,)"]),
    ("bias int", dict(bias=np.zeros(6, np.int32)), TypeError, ["bias", "int32"]),
    ("out shape", dict(out=np.zeros((1, 6, 7, 7), np.float32)), ValueError, ["out", "(1, 6, 6, 6)"]),
    ("out dtype", dict(out=np.zeros((1, 6, 6, 6), np.float64)), TypeError, ["out", "float64"]),
    ("out not array", dict(out=[0.0]), TypeError, ["out"]),
    ("out not contiguous", dict(out=np.zeros((1, 6, 6, 12), np.float32)[..., ::2]), ValueError, ["out", "contiguous"]),
    ("activation", dict(activation="gelu"), ValueError, ["activation", "gelu"]),
    ("layout", dict(layout="CHWN"), ValueError, ["layout", "CHWN"]),
    ("backend unknown", dict(backend="cuda"), ValueError, ["backend", "cuda", "numpy"]),
]


def _call(default_backend, **kw):
    args = dict(x=X, weight=W, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=default_backend)
    args.update(kw)
    kw_only = {k: args.pop(k) for k in ("activation", "layout", "out", "backend") if k in args}
    return fp.conv2d(**args, **kw_only)


@pytest.mark.parametrize("desc,kwargs,exc,words", CASES, ids=[c[0] for c in CASES])
def test_invalid_argument(any_backend, desc, kwargs, exc, words):
    with pytest.raises(exc) as info:
        _call(any_backend, **kwargs)
    msg = str(info.value)
    for word in words:
        assert word in msg, f"{desc}: {word!r} not in {msg!r}"


def test_out_readonly():
    out = np.zeros((1, 6, 6, 6), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out.*writable"):
        fp.conv2d(X, W, out=out)


@pytest.mark.parametrize("which", ["x", "weight", "bias"])
def test_out_overlapping_an_input_is_refused(which):
    buf = np.zeros(10_000, np.float32)
    out = buf[:216].reshape(1, 6, 6, 6)
    x, w, b = X, W, np.zeros(6, np.float32)
    if which == "x":
        x = buf[100:356].reshape(1, 4, 8, 8)
    elif which == "weight":
        w = buf[:216].reshape(6, 4, 3, 3)
    else:
        b = buf[10:16]
    with pytest.raises(ValueError, match=f"out.*overlaps {which}"):
        fp.conv2d(x, w, b, out=out)


def test_conv1x1_rejects_spatial_weight():
    with pytest.raises(ValueError, match="conv1x1 weight"):
        fp.conv1x1(X, W)


def test_conv2d_layer_validates_at_construction():
    with pytest.raises(ValueError, match="stride"):
        fp.Conv2d(W, stride=0)
    with pytest.raises(ValueError, match="backend"):
        fp.Conv2d(W, backend="nope")
    layer = fp.Conv2d(W)
    with pytest.raises(ValueError, match="channels"):
        layer(np.zeros((1, 3, 8, 8), np.float32))


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="n >= 1"):
        fp.set_num_threads(0)
    with pytest.raises(TypeError, match="int"):
        fp.set_num_threads(2.0)
