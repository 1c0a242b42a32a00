"""Tiling decisions for the Numba kernels, from the same cache detection as the C backend
(:func:`fastpoint.core.machine.cache_sizes`).

Pure Python (no Numba): block sizes are plain ints handed to the kernels, so changing one never
triggers a recompilation.
"""

from __future__ import annotations

from ...core.machine import cache_sizes
from .simd import VECTOR_BYTES

#: rows of the register tile (output channels for NCHW, output pixels for NHWC).  With two vectors
#: per row this is 12 accumulators: enough independent FMA chains to hide the FMA latency
#: (4 cycles x 2 ports = 8 needed) and, with 2 operand registers and a broadcast, it still fits the
#: 16 registers of AVX2 (32 on AVX-512).
MR = 6
#: vectors per tile row; the tile is MR x (NV * lanes) outputs
NV = 2


def lanes(itemsize: int) -> int:
    return VECTOR_BYTES // itemsize


def tile_cols(itemsize: int) -> int:
    return NV * lanes(itemsize)


def panel_block(panel_bytes: int, panels: int, other_jobs: int = 1, threads: int = 1) -> int:
    """How many weight panels one task keeps hot: at most half of L2, so the streamed input has the rest.

    The weights of a block are reused by every input tile of the task (BLIS's MC block); the input
    tile is reused from L1 by every panel of the block.  The panels are cut into blocks of equal size
    (a 54-panel layer made one block of 45 and one of 9, so at 2 threads one thread did 5/6 of the
    work), and into more blocks when the other dimensions give fewer than ``JOBS_PER_THREAD`` tasks per
    thread (7x7 maps have 2 position tiles: mb2_pw_960_320_7 made 4 tasks, 2 of them 1/5 the size).
    """
    most = max(1, min(panels, (cache_sizes()[2] // 2) // max(1, panel_bytes)))
    blocks = -(-panels // most)
    if threads > 1 and blocks * other_jobs < JOBS_PER_THREAD * threads:
        blocks = min(panels, -(-JOBS_PER_THREAD * threads // max(1, other_jobs)))
    return -(-panels // blocks)


#: tasks per thread that split_tiles aims at when a layer has few other jobs
JOBS_PER_THREAD = 4


def split_tiles(total_tiles: int, other_jobs: int, threads: int, max_tiles: int = 16) -> int:
    """Tiles per task along the streamed dimension: at most ``max_tiles`` (they share one weight block in L2),
    and small enough to give every thread several tasks when there are few other jobs."""
    want_jobs = JOBS_PER_THREAD * threads
    per = total_tiles * other_jobs // want_jobs  # rounded down: at least want_jobs tasks
    return max(1, min(max_tiles, per, total_tiles))


def k_chunk(step_bytes: int) -> int:
    """Steps of K per chunk: the input a tile reads per chunk (``step_bytes`` per step) fills half of L1,
    leaving the rest to the weight panel's stream and the partial sums."""
    return max(16, (cache_sizes()[1] // 2) // step_bytes)
