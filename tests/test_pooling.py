"""max_pool2d / avg_pool2d: PyTorch semantics, a naive loop reference, layouts, dtypes, argument errors."""

import numpy as np
import pytest

import fastpoint as fp

from .conftest import int_array

CASES = [  # kernel_size, stride, padding
    (2, None, 0), (3, 2, 1), (3, 1, 1), ((3, 2), (1, 2), (1, 0)), (1, 1, 0), ((2, 4), (3, 1), (1, 2)),
]


def naive_pool(x, k, s, p, op, count_include_pad=True):
    """One window at a time, as the definition reads."""
    k, s, p = (np.broadcast_to(np.asarray(v), 2) for v in (k, k if s is None else s, p))
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            r, cc = slice(max(r0, 0), min(r0 + k[0], h)), slice(max(c0, 0), min(c0 + k[1], w))
            win = x[:, :, r, cc]
            if op == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                count = k[0] * k[1] if count_include_pad else win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out


@pytest.mark.parametrize("k,s,p", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_matches_naive(k, s, p, dtype):
    x = int_array(np.random.default_rng(0), (2, 3, 11, 13), dtype=dtype)
    assert fp.max_pool2d(x, k, s, p).dtype == dtype
    np.testing.assert_array_equal(fp.max_pool2d(x, k, s, p), naive_pool(x, k, s, p, "max"))
    np.testing.assert_array_equal(fp.avg_pool2d(x, k, s, p), naive_pool(x, k, s, p, "avg"))
    np.testing.assert_array_equal(fp.avg_pool2d(x, k, s, p, count_include_pad=False),
                                  naive_pool(x, k, s, p, "avg", False))


@pytest.mark.parametrize("k,s,p", CASES)
def test_pool_nhwc_and_unbatched(k, s, p):
    x = int_array(np.random.default_rng(1), (2, 3, 9, 10))
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for fn in (fp.max_pool2d, fp.avg_pool2d):
        ref = fn(x, k, s, p)
        np.testing.assert_array_equal(fn(xh, k, s, p, layout="NHWC").transpose(0, 3, 1, 2), ref)
        np.testing.assert_array_equal(fn(x[1], k, s, p), ref[1])


@pytest.mark.parametrize("k,s,p", CASES)
def test_pool_matches_torch(k, s, p):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(2).standard_normal((2, 3, 12, 11)).astype(np.float32)
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(fp.max_pool2d(x, k, s, p), F.max_pool2d(t, k, s, p).numpy())
    np.testing.assert_allclose(fp.avg_pool2d(x, k, s, p), F.avg_pool2d(t, k, s, p).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fp.avg_pool2d(x, k, s, p, count_include_pad=False),
                               F.avg_pool2d(t, k, s, p, count_include_pad=False).numpy(), rtol=1e-6, atol=1e-6)


def test_max_pool_nan_and_inf():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = -np.inf
    y = fp.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y).sum() == 1
    assert y[0, 0, 1, 1] == 0


@pytest.mark.parametrize("call,exc,words", [
    (lambda x: fp.max_pool2d(x, 0), ValueError, "kernel_size"),
    (lambda x: fp.max_pool2d(x, 2, 0), ValueError, "stride"),
    (lambda x: fp.max_pool2d(x, 2, 2, 2), ValueError, "padding"),
    (lambda x: fp.max_pool2d(x, 9), ValueError, "kernel_size"),
    (lambda x: fp.max_pool2d(x.astype(np.int32), 2), TypeError, "int32"),
    (lambda x: fp.max_pool2d(x[0, 0], 2), ValueError, "(N, C, H, W)"),
    (lambda x: fp.max_pool2d(x, 2, layout="NCWH"), ValueError, "layout"),
    (lambda x: fp.avg_pool2d(x, 2, count_include_pad=1), TypeError, "count_include_pad"),
    (lambda x: fp.avg_pool2d(x, 2.5), TypeError, "kernel_size"),
])
def test_pool_errors_name_the_argument(call, exc, words):
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        call(x)
