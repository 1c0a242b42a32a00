"""max_pool2d / avg_pool2d (dilation, ceil_mode, count_include_pad, divisor_override) and interpolate
(any size or factor, nearest / nearest-exact / bilinear, align_corners) against PyTorch."""

import itertools

import numpy as np
import pytest

import fastpoint as fp

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


MAX_CASES = [  # kernel, stride, padding, dilation, ceil_mode, H, W
    (k, s, p, d, c, h, w)
    for (k, s, p, d), c, (h, w) in itertools.product(
        [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2), ((3, 2), (2, 1), (1, 0), (1, 2)), (2, 3, 1, 1), (5, 3, 2, 1)],
        [False, True], [(7, 7), (8, 9), (11, 6)])
]


@pytest.mark.parametrize("k,s,p,d,ceil,h,w", MAX_CASES)
def test_max_pool2d_matches_torch(k, s, p, d, ceil, h, w):
    x = _x((2, 3, h, w))
    ref = F.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil_mode=ceil).numpy()
    got = fp.max_pool2d(x, k, s, p, dilation=d, ceil_mode=ceil)
    np.testing.assert_array_equal(got, ref)
    got_nhwc = fp.max_pool2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), k, s, p, d, ceil, layout="NHWC")
    np.testing.assert_array_equal(got_nhwc.transpose(0, 3, 1, 2), ref)


AVG_CASES = [
    (k, s, p, c, inc, div, h, w)
    for (k, s, p), c, inc, div, (h, w) in itertools.product(
        [(2, 2, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 1)), (2, 3, 1), (5, 3, 2)],
        [False, True], [True, False], [None, 3], [(7, 7), (8, 9)])
]


@pytest.mark.parametrize("k,s,p,ceil,include,div,h,w", AVG_CASES)
def test_avg_pool2d_matches_torch(k, s, p, ceil, include, div, h, w):
    x = _x((2, 3, h, w), 1)
    ref = F.avg_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=ceil, count_include_pad=include,
                       divisor_override=div).numpy()
    got = fp.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=include, divisor_override=div)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_pool_argument_errors():
    x = _x((1, 2, 5, 5))
    with pytest.raises(ValueError, match="padding"):
        fp.max_pool2d(x, 3, padding=2)
    fp.max_pool2d(x, 3, padding=2, dilation=2)  # allowed: half of the dilated kernel (5)
    with pytest.raises(TypeError, match="ceil_mode"):
        fp.max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(ValueError, match="divisor_override"):
        fp.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="larger than the padded"):
        fp.max_pool2d(x, 3, dilation=3)


def test_max_pool2d_nan_and_float64():
    x = _x((1, 1, 6, 6), dtype=np.float64)
    x[0, 0, 1, 1] = np.nan
    ref = F.max_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=True).numpy()
    got = fp.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, ref)


INTERP_CASES = [
    ("nearest", None, (7, 9), None), ("nearest", None, None, 2), ("nearest", None, None, (1.5, 2.5)),
    ("nearest", None, None, 0.37), ("nearest", None, (3, 17), None), ("nearest-exact", None, None, (1.7, 0.6)),
    ("nearest-exact", None, (13, 4), None), ("bilinear", False, (13, 4), None), ("bilinear", False, None, 2),
    ("bilinear", False, None, (1.3, 2.7)), ("bilinear", False, None, 0.45), ("bilinear", True, (13, 4), None),
    ("bilinear", True, None, 3), ("bilinear", True, (1, 1), None), ("bilinear", False, (1, 20), None),
    ("nearest", None, (6, 8), None),
]


@pytest.mark.parametrize("mode,align,size,factor", INTERP_CASES)
def test_interpolate_matches_torch(mode, align, size, factor):
    x = _x((2, 3, 6, 8), 2)
    kw = {} if align is None else {"align_corners": align}
    ref = F.interpolate(torch.from_numpy(x), size=size, scale_factor=factor, mode=mode, **kw).numpy()
    got = fp.interpolate(x, size=size, scale_factor=factor, mode=mode, **kw)
    assert got.shape == ref.shape
    if mode.startswith("nearest"):
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    nhwc = fp.interpolate(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), size=size, scale_factor=factor,
                          mode=mode, layout="NHWC", **kw)
    np.testing.assert_allclose(nhwc.transpose(0, 3, 1, 2), got, rtol=1e-6, atol=1e-7)


def test_interpolate_recompute_scale_factor():
    x = _x((1, 2, 5, 7), 3)
    ref = F.interpolate(torch.from_numpy(x), scale_factor=1.7, mode="bilinear", recompute_scale_factor=True).numpy()
    np.testing.assert_allclose(fp.interpolate(x, scale_factor=1.7, mode="bilinear", recompute_scale_factor=True),
                               ref, rtol=1e-5, atol=1e-6)


def test_interpolate_errors_and_no_aliasing():
    x = _x((1, 2, 4, 4))
    with pytest.raises(ValueError, match="exactly one"):
        fp.interpolate(x)
    with pytest.raises(ValueError, match="exactly one"):
        fp.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="mode"):
        fp.interpolate(x, size=3, mode="bicubic")
    with pytest.raises(ValueError, match="align_corners"):
        fp.interpolate(x, size=3, mode="nearest", align_corners=False)
    with pytest.raises(ValueError, match="size"):
        fp.interpolate(x, size=0)
    y = fp.interpolate(x, size=4)
    assert not np.shares_memory(x, y)
    np.testing.assert_array_equal(y, x)
    assert fp.interpolate(x[0], scale_factor=2).shape == (2, 8, 8)  # unbatched


@pytest.mark.parametrize("k,s,p,d,ceil", [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False)])
def test_max_pool2d_return_indices_matches_torch(k, s, p, d, ceil):
    x = _x((2, 3, 9, 8), 4)
    x[0, 0, :3, :3] = 1.0  # ties: the first maximum wins, as in PyTorch
    ref, ref_idx = F.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    got, idx = fp.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(got, ref.numpy())
    np.testing.assert_array_equal(idx, ref_idx.numpy())
    assert idx.dtype == np.int64
