"""An independent, explicit-loop formulation of conv2d, to check the NumPy reference itself."""
import numpy as np


def conv2d_loops(x, w, b, stride, pad, dilation, groups):
    """x (N, C, H, W); pad = (top, bottom, left, right); pure Python loops over every output."""
    n_, c, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    pt, pb, pl, pr = pad
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    cout_g = cout // groups
    y = np.zeros((n_, cout, oh, ow), dtype=np.float64)
    for n in range(n_):
        for co in range(cout):
            g = co // cout_g
            for oy in range(oh):
                for ox in range(ow):
                    s = 0.0 if b is None else float(b[co])
                    for ci in range(cin_g):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy = oy * sh - pt + ky * dh
                                ix = ox * sw - pl + kx * dw
                                if 0 <= iy < h and 0 <= ix < wd:
                                    s += float(x[n, g * cin_g + ci, iy, ix]) * float(w[co, ci, ky, kx])
                    y[n, co, oy, ox] = s
    return y
