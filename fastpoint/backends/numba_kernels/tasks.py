"""How the dense kernels (NCHW and NHWC) cut a convolution into tasks.

A task is (image, group, block of channel tiles, block of position tiles); the position block varies
fastest, so consecutive tasks share the same weight block (kept in L2) and read neighbouring input.
"""

from __future__ import annotations

from numba import njit


@njit(inline="always")
def count(n_, groups, co_tiles, co_block, q_tiles, q_block):
    """(tasks, channel blocks, position blocks) of a layer with the given tiles and block sizes."""
    co_blocks = (co_tiles + co_block - 1) // co_block
    q_blocks = (q_tiles + q_block - 1) // q_block
    return n_ * groups * co_blocks * q_blocks, co_blocks, q_blocks


@njit(inline="always")
def split(task, groups, co_blocks, q_blocks):
    """(image, group, channel block, position block) of task number ``task``."""
    qb = task % q_blocks
    rest = task // q_blocks
    cb = rest % co_blocks
    rest //= co_blocks
    return rest // groups, rest % groups, cb, qb
