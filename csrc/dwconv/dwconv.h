/* Depthwise convolution (groups = cin, cout = multiplier * cin), float32, NCHW and NHWC.
 * Memory-bound by nature (about 2 flop per byte moved for 3x3), so it is judged in GB/s.
 *
 * Packed weights, both layouts: [kh*kw][cout padded to 16], so one vector load gives 16 output
 * channels of one tap (every kernel vectorizes along channels, NCHW on transposed tiles). */
#ifndef FP_DWCONV_H
#define FP_DWCONV_H
#include "../internal.h"

#define FP_DW_CB 16

static inline int64_t fp_dw_cpad(const fp_conv_problem *p) { return FP_CEIL_DIV(p->cout, FP_DW_CB) * FP_DW_CB; }

/* NCHW on transposed tiles (every ISA): a job is 16 output channels x a band of output rows. */
typedef struct fp_dw_bands {
    int64_t cblocks, brows, bands, tile_rows, jobs;
} fp_dw_bands;

/* Bands: the input tile [rows][W][16] stays near 96 KiB, and there are jobs enough for every thread. */
static inline fp_dw_bands fp_dw_plan(const fp_conv_problem *p, int64_t threads) {
    fp_dw_bands b;
    const int64_t sh = p->stride_h, reach = (p->kh - 1) * p->dil_h + 1;
    b.cblocks = FP_CEIL_DIV(p->cout, 16);
    b.brows = FP_MAX(1, (FP_MAX(reach + sh, 98304 / (p->w * 64)) - reach) / sh + 1);
    const int64_t want = FP_CEIL_DIV(4 * threads, p->n * b.cblocks);
    if (threads > 1 && want > 1) b.brows = FP_MIN(b.brows, FP_MAX(1, FP_CEIL_DIV(p->oh, want)));
    b.brows = FP_MIN(b.brows, p->oh);
    b.bands = FP_CEIL_DIV(p->oh, b.brows);
    b.tile_rows = FP_MIN(p->h, (b.brows - 1) * sh + reach);
    b.jobs = p->n * b.cblocks * b.bands;
    return b;
}

/* Job `job` of a plan: image n, channels [cb, cb + nch), output rows [oy0, oy1), input rows
 * [iy_lo, iy_hi) that they read. */
typedef struct fp_dw_job {
    int64_t n, cb, nch, oy0, oy1, iy_lo, iy_hi;
} fp_dw_job;

static inline fp_dw_job fp_dw_job_at(const fp_conv_problem *p, const fp_dw_bands *b, int64_t job) {
    fp_dw_job j;
    const int64_t rem = job % (b->cblocks * b->bands);
    j.n = job / (b->cblocks * b->bands);
    j.cb = (rem / b->bands) * 16;
    j.nch = FP_MIN(16, p->cout - j.cb);
    j.oy0 = (rem % b->bands) * b->brows;
    j.oy1 = FP_MIN(p->oh, j.oy0 + b->brows);
    j.iy_lo = FP_MAX(0, j.oy0 * p->stride_h - p->pad_top);
    j.iy_hi = FP_MIN(p->h, (j.oy1 - 1) * p->stride_h - p->pad_top + (p->kh - 1) * p->dil_h + 1);
    return j;
}

int fp_dwconv_run_avx512(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);
int fp_dwconv_run_avx2(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);
int fp_dwconv_run_c(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);

#endif
