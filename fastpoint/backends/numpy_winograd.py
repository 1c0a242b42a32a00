"""NumPy reference of Winograd minimal filtering F(m x m, 3 x 3) (Lavin & Gray, CVPR 2016).

One output tile of m x m pixels is computed from an n x n input tile, n = m + 2, as

    Y = A^T [ (G g G^T) * (B^T d B) ] A            (* element-wise, summed over input channels)

with the matrices built here by the Cook-Toom construction from the points 0, 1, -1, 2, -2, ...
and infinity ("modified" form: the point at infinity keeps the entries small):

* B^T (n x n): row j holds the coefficients (increasing powers) of M(x) / (x - p_j), where M is the
  product of (x - p) over the finite points; the last row (infinity) holds those of M itself;
* G (n x 3): row j is [1, p_j, p_j^2] / prod_{l != j} (p_j - p_l); the last row is [0, 0, 1];
* A^T (m x n): column j is [1, p_j, ..., p_j^(m-1)]; the last column is [0, ..., 0, 1].

This is the transposition of Toom-Cook polynomial multiplication (correlation is the transpose of
convolution).  The matrices are exact rationals, returned as float64.  The filter transform is done
in float64 and rounded once, as the C kernels do at pack time; the data and inverse transforms run
in the dtype asked for, so that the accuracy study (tools/winograd_accuracy.py) sees the rounding of
a float32 implementation.  This module is for tests and docs: short, not fast.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Optional, Sequence, Tuple

import numpy as np

_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))


def points(m: int, r: int = 3) -> Tuple[Fraction, ...]:
    """The finite points of F(m, r): n - 1 = m + r - 2 of 0, 1, -1, 2, -2, 1/2, -1/2 (then infinity)."""
    count = m + r - 2
    if count > len(_POINTS):
        raise ValueError(f"F({m}, {r}) needs {count} finite points; only {len(_POINTS)} are defined")
    return tuple(Fraction(p) for p in _POINTS[:count])


def _poly_mul_linear(coeffs: Sequence[Fraction], root: Fraction) -> list:
    """Coefficients (increasing powers) of coeffs(x) * (x - root)."""
    out = [Fraction(0)] * (len(coeffs) + 1)
    for i, c in enumerate(coeffs):
        out[i + 1] += c
        out[i] -= root * c
    return out


def matrices(m: int, r: int = 3) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(m, r) as float64 arrays of shapes (m, n), (n, r), (n, n)."""
    pts = points(m, r)
    n = m + r - 1
    AT = [[Fraction(0)] * n for _ in range(m)]
    G = [[Fraction(0)] * r for _ in range(n)]
    BT = [[Fraction(0)] * n for _ in range(n)]
    for j, p in enumerate(pts):
        others = [q for q in pts if q != p]
        f = Fraction(1)
        poly = [Fraction(1)]
        for q in others:
            f *= p - q
            poly = _poly_mul_linear(poly, q)
        for i in range(m):
            AT[i][j] = p**i
        for k in range(r):
            G[j][k] = p**k / f
        BT[j][: len(poly)] = poly
    full = [Fraction(1)]
    for q in pts:
        full = _poly_mul_linear(full, q)
    AT[m - 1][n - 1] = Fraction(1)
    G[n - 1][r - 1] = Fraction(1)
    BT[n - 1] = full
    as_f64 = lambda rows: np.array([[float(v) for v in row] for row in rows], dtype=np.float64)  # noqa: E731
    return as_f64(AT), as_f64(G), as_f64(BT)


def transform_filters(weight: np.ndarray, m: int = 4) -> np.ndarray:
    """U = G g G^T for every (cout, cin) filter, computed in float64: shape (cout, cin, n, n)."""
    _, G, _ = matrices(m)
    return np.einsum("ik,ockl,jl->ocij", G, weight.astype(np.float64), G, optimize=True)


def conv2d_winograd_nchw(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
                         padding: Tuple[int, int, int, int] = (0, 0, 0, 0), relu: bool = False,
                         m: int = 4, dtype=None) -> np.ndarray:
    """3x3, stride-1 convolution (PyTorch semantics, cross-correlation) of NCHW ``x`` by F(m x m, 3 x 3).

    ``padding`` is (top, bottom, left, right).  The data and inverse transforms and the products run in
    ``dtype`` (default: x's dtype); the filter transform in float64, rounded once to ``dtype``.
    """
    dtype = np.dtype(dtype or x.dtype)
    N, C, H, W = x.shape
    K = weight.shape[0]
    if weight.shape[1:] != (C, 3, 3):
        raise ValueError(f"weight must be (cout, {C}, 3, 3), got {weight.shape}")
    pt, pb, pl, pr = padding
    oh, ow = H + pt + pb - 2, W + pl + pr - 2
    if oh < 1 or ow < 1:
        raise ValueError(f"empty output {oh}x{ow} for input {H}x{W} and padding {padding}")
    AT64, _, BT64 = matrices(m)
    AT, BT = AT64.astype(dtype), BT64.astype(dtype)
    U = transform_filters(weight, m).astype(dtype)
    n = m + 2
    th, tw = -(-oh // m), -(-ow // m)
    # zero rows/columns past the image so the last (partial) tiles have a whole n x n input
    xp = np.zeros((N, C, th * m + 2, tw * m + 2), dtype=dtype)
    xp[:, :, pt:pt + H, pl:pl + W] = x  # th * m + 2 >= oh + 2 = H + pt + pb
    d = np.lib.stride_tricks.sliding_window_view(xp, (n, n), axis=(2, 3))[:, :, ::m, ::m]  # N,C,th,tw,n,n
    V = np.einsum("ij,nctsjk,lk->nctsil", BT, d, BT, optimize=True)
    Mt = np.einsum("ocil,nctsil->notsil", U, V, optimize=True)
    Y = np.einsum("ij,notsjk,lk->notsil", AT, Mt, AT, optimize=True)  # N,K,th,tw,m,m
    y = Y.transpose(0, 1, 2, 4, 3, 5).reshape(N, K, th * m, tw * m)[:, :, :oh, :ow]
    y = np.ascontiguousarray(y)
    if bias is not None:
        y += bias.astype(dtype)[:, None, None]
    if relu:
        np.maximum(y, 0, out=y)
    return y
