"""Writing one vector of results into an NCHW output row: bias, ReLU, and grid-to-image mapping."""

from __future__ import annotations

from numba import njit

from .simd import lanes, vrelu, vstore, vstore_lanes


@njit(inline="always")
def finish(v, relu):
    """ReLU as ``v < 0 ? 0 : v`` so NaN stays NaN; ``relu`` is an int flag (one compiled signature)."""
    return vrelu(v) if relu != 0 else v


@njit(inline="always")
def store_positions(y, ybase, v, q, wq, ow, qtotal):
    """Store the lanes of ``v`` (grid positions q, q+1, ...) that are real output pixels.

    ``y[ybase + oy * ow + ox]`` receives position ``oy * wq + ox`` when ``ox < ow``; junk columns
    (``ox >= ow``) and positions past ``qtotal`` are not written.  The common case, all lanes inside
    one output row, is a single store.
    """
    oy = q // wq
    store_positions_at(y, ybase, v, q, oy, q - oy * wq, wq, ow, qtotal)


@njit(inline="always")
def store_positions_at(y, ybase, v, q, oy, ox, wq, ow, qtotal):
    """:func:`store_positions` with ``(oy, ox)`` of q given: callers storing many rows at the same
    positions divide once (an integer division costs as much as a dozen FMAs)."""
    nl = lanes(y)
    if ox + nl <= ow and q + nl <= qtotal:
        vstore(y, ybase + oy * ow + ox, v)
        return
    lane = 0
    while lane < nl and q < qtotal:
        run = min(wq - ox, nl - lane)  # lanes left in this grid row
        if ox < ow:
            vstore_lanes(y, ybase + oy * ow + ox - lane, v, lane, lane + min(run, ow - ox))
        lane += run
        q += run
        oy += 1
        ox = 0
