/* The last few pixels of the swapped-operand one-shot GEMM (gemm_once_wrows.c).  49 pixels are 48 + 1: a
 * tile of its own for the 49th costs the 8 x 48 kernel as many FMA instructions per row as 16 pixels (one
 * lane of 16 used), a third of the main tiles' time.  Instead, 16 rows of W at a time (just read by the
 * main tiles, so in L2) are transposed in registers, 16 x 16 blocks, and each block's 16 W^T vectors (lanes
 * = output channels) are multiplied by the tail pixels' inputs: one FMA per tail pixel and k for 16 outputs. */
#ifndef FASTPOINT_GEMM_ONCE_WROWS_H
#define FASTPOINT_GEMM_ONCE_WROWS_H
#include "../internal.h"

/* At most this many tail pixels (accumulators per 16 rows). */
#define FP_WROWS_TAIL_MAX 4

/* sums[j * 16 + i] = sum over k < kc, in k order, of w[i * ld + k] * xt[k * nt + j] for 16 rows i and
 * nt <= FP_WROWS_TAIL_MAX tail pixels j: each an FMA chain from zero, as the micro-kernels accumulate. */
void fp_wrows_tail16_avx512(const float *w, int64_t ld, int64_t kc, const float *xt, int nt, float *sums);
/* NHWC store of a tile of mr <= 16 output channels x nr <= 48 pixels (row i at tile + i * ldt, the chain sums
 * the micro-kernel left there): pixel q's channels [c0, c0 + mr) of y, pixel rows ldy apart, get the sum plus
 * the bias (first k block) or their previous value, then ReLU, as the micro-kernels finish a tile. */
void fp_wrows_store_nhwc_avx512(const float *tile, int64_t ldt, int64_t mr, int64_t nr, const float *bias, int first,
                                int relu, float *y, int64_t ldy);
#endif
