"""upsample: PyTorch F.interpolate semantics for integer factors, layouts, dtypes, argument errors."""

import numpy as np
import pytest

import fastpoint as fp

from .conftest import int_array

SCALES = [2, 3, (2, 3), (1, 4)]
MODES = [("nearest", False), ("bilinear", False), ("bilinear", True)]


def naive_bilinear(x, s, align_corners):
    n, c, h, w = x.shape
    oh, ow = h * s[0], w * s[1]

    def src(i, size, out_size, scale):
        if align_corners:
            return i * (size - 1) / (out_size - 1) if out_size > 1 else 0.0
        return max((i + 0.5) / scale - 0.5, 0.0)

    out = np.empty((n, c, oh, ow), np.float64)
    for i in range(oh):
        y = src(i, h, oh, s[0])
        y0 = min(int(np.floor(y)), h - 1)
        y1, ly = min(y0 + 1, h - 1), y - y0
        for j in range(ow):
            xx = src(j, w, ow, s[1])
            x0 = min(int(np.floor(xx)), w - 1)
            x1, lx = min(x0 + 1, w - 1), xx - x0
            out[:, :, i, j] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                               + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return out


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nearest_is_repeat(scale, dtype):
    x = int_array(np.random.default_rng(0), (2, 3, 5, 7), dtype=dtype)
    s = (scale, scale) if isinstance(scale, int) else scale
    y = fp.upsample(x, scale)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, s[0], axis=2), s[1], axis=3))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_matches_naive(scale, align_corners):
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 6))
    s = (scale, scale) if isinstance(scale, int) else scale
    np.testing.assert_allclose(fp.upsample(x, scale, "bilinear", align_corners), naive_bilinear(x, s, align_corners),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("mode,align_corners", MODES)
def test_matches_torch(scale, mode, align_corners):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 6)).astype(np.float32)
    kwargs = {} if mode == "nearest" else {"align_corners": align_corners}
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=scale, mode=mode, **kwargs).numpy()
    np.testing.assert_allclose(fp.upsample(x, scale, mode, align_corners), ref, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("mode,align_corners", MODES)
def test_nhwc_and_unbatched(mode, align_corners):
    x = int_array(np.random.default_rng(3), (2, 3, 4, 5))
    ref = fp.upsample(x, 2, mode, align_corners)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(fp.upsample(xh, 2, mode, align_corners, layout="NHWC").transpose(0, 3, 1, 2), ref)
    np.testing.assert_array_equal(fp.upsample(x[0], 2, mode, align_corners), ref[0])


def test_scale_one_and_single_pixel():
    x = int_array(np.random.default_rng(4), (1, 2, 1, 3))
    np.testing.assert_array_equal(fp.upsample(x, 1, "bilinear"), x)
    y = fp.upsample(x, 2, "bilinear", True)
    np.testing.assert_array_equal(y[:, :, 0], y[:, :, 1])


@pytest.mark.parametrize("call,exc,words", [
    (lambda x: fp.upsample(x, 1.5), TypeError, "scale_factor"),
    (lambda x: fp.upsample(x, 0), ValueError, "scale_factor"),
    (lambda x: fp.upsample(x, 2, "bicubic"), ValueError, "mode"),
    (lambda x: fp.upsample(x, 2, "nearest", True), ValueError, "align_corners"),
    (lambda x: fp.upsample(x, 2, "bilinear", "yes"), TypeError, "align_corners"),
    (lambda x: fp.upsample(x.astype(np.float16), 2), TypeError, "float16"),
    (lambda x: fp.upsample(x[0, 0], 2), ValueError, "3-d|2-d"),
    (lambda x: fp.upsample(x, 2, layout="CHW"), ValueError, "layout"),
])
def test_errors_name_the_argument(call, exc, words):
    x = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(exc, match=words):
        call(x)
