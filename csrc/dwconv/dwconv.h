/* Depthwise convolution (groups = cin, cout = multiplier * cin), float32, NCHW and NHWC.
 * Memory-bound by nature (about 2 flop per byte moved for 3x3), so it is judged in GB/s.
 *
 * Packed weights, both layouts: [kh*kw][cout padded to 16], so one vector load gives 16 output
 * channels of one tap (every kernel vectorizes along channels, NCHW on transposed tiles).
 *
 * Layout of csrc/dwconv/: dwconv.c (the algorithm: packing, fp_dw_select), dwconv_driver.c (jobs,
 * threads, layouts; names no ISA), one file per micro-kernel, <dtype>_dwconv_<tile>__<isa>.c, each
 * defining an fp_dw_ukernel row.  A new kernel: its file and row, declared below, and its line in the
 * dwconv table of csrc/kernel_table.c (docs/conventions.md). */
#ifndef FP_DWCONV_H
#define FP_DWCONV_H
#include "../internal.h"
#include "../kernel_table.h"

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

/* Geometry of the data the blocks read and write: an NHWC image, or an NCHW tile [row][W][16].  C is
 * the pixel stride of the input and the output (multiplier 1; the pixel path reads cin). */
typedef struct fp_dw_geo {
    int64_t C, cpad, W, kw, sw, dw, dh, pl, cin, ow;
    int64_t cs; /* channel blocks start cs channels early, so that full vectors are 64-byte aligned */
    int nt;     /* full output vectors are streamed (non-temporal): the output does not fit in L2 */
    int relu;
} fp_dw_geo;

/* pw adjacent output pixels (pw = the table index + 1), channels [c0, c1) in blocks of 16.  xrow:
 * input row ky0 at column 0; col0: the first pixel's first input column (possibly left of the
 * image); w: taps of kernel row ky0; nky kernel rows.  Blocks of edge tables check the columns. */
typedef void (*fp_dw_block_fn)(const float *xrow, int64_t col0, const float *w, const fp_dw_geo *g, int64_t nky,
                               const float *bias, int64_t c0, int64_t c1, float *yp);
/* Two output rows of a 3x3, stride 1, dilation 1 kernel (xrow: the first of the 4 input rows; the
 * second output row lies g->ow pixels after yp). */
typedef void (*fp_dw_pair_fn)(const float *xrow, int64_t col0, const float *w, const fp_dw_geo *g, const float *bias,
                              int64_t c0, int64_t c1, float *yp);
/* Output pixels [ox0, ox1) of one NHWC row, channels [c0, c1), every tap checked (borders, any
 * multiplier m).  xn: the image; iyb: the row's first input row; acc: cout floats (FP_DW_PIXEL_ACC). */
typedef void (*fp_dw_pixels_fn)(const fp_conv_problem *p, const float *xn, const float *w, const float *bias,
                                int64_t m, int64_t iyb, int64_t ky0, int64_t ky1, int64_t ox0, int64_t ox1, int64_t c0,
                                int64_t c1, float *yrow, float *acc);
/* NCHW tiles: npix consecutive pixels from offset `at` of nch planes -> [pixel][16] (lanes >= nch
 * zero), and back.  [pixel][16] rows are 64-byte aligned. */
typedef void (*fp_dw_tile_in_fn)(const float *const *pl, int64_t nch, int64_t at, int64_t npix, float *dst);
typedef void (*fp_dw_tile_out_fn)(const float *src, int64_t npix, float *const *pl, int64_t nch, int64_t at);

/* What a kernel lets the driver do (fp_dw_ukernel.caps). */
enum {
    FP_DW_ALIGNED = 1,     /* NHWC channel grid shifted to 64-byte lines, streamed stores, groups on output lines */
    FP_DW_GROUPS = 2,      /* NHWC rows split into channel groups when rows are few for the threads */
    FP_DW_NHWC_BLOCKS = 4, /* NHWC rows run in blocks (else pixel by pixel, all channels at once) */
    FP_DW_PIXEL_ACC = 8,   /* pixels() needs an accumulator row of cout floats */
};

/* One depthwise micro-kernel: the register-blocked inner loops of one ISA, which the ISA-free driver
 * (dwconv_driver.c) runs over jobs, threads and layouts.  A row of the dwconv table
 * (csrc/kernel_table.c): the common row (name <dtype>_dwconv_<tile>__<isa>, ISA, register tile),
 * then what the driver needs.  fp_dw_select picks one for a problem. */
typedef struct fp_dw_ukernel {
    fp_kernel k;
    int tile_px, tile_c;    /* the largest block call: pixels x channels */
    unsigned caps;          /* FP_DW_* */
    int64_t nchw_generic_ow; /* NCHW planes at least this wide run the generic algorithm instead; 0: none */
    const fp_dw_block_fn *(*blocks)(const fp_conv_problem *p); /* the shape's [edge][tile_px] table */
    const fp_dw_pair_fn *pairs; /* [edge][tile_px]; NULL: no row pairs */
    fp_dw_pixels_fn pixels;
    int64_t (*px)(int64_t ow); /* pixels per block for a row of ow */
    fp_dw_tile_in_fn tile_in;
    fp_dw_tile_out_fn tile_out;
    void (*fence)(void); /* drains streamed stores (FP_DW_ALIGNED) */
} fp_dw_ukernel;

extern const fp_dw_ukernel fp_f32_dwconv_8x16c__avx512, fp_f32_dwconv_4x16c__avx2, fp_f32_dwconv_4x16c__scalar;

/* The micro-kernel for a problem at an ISA level (dwconv.c: the table's choice), and the driver that
 * runs it. */
const fp_dw_ukernel *fp_dw_select(const fp_conv_problem *p, int isa);
int fp_dw_drive(const fp_dw_ukernel *k, const fp_conv_problem *p, const float *x, const float *w, const float *bias,
                float *y);
/* One-shot (the algorithm's run_unpacked): the caller's [cout][kh*kw] weights w, packed after the split by the
 * threads that use them (NCHW: per chunk of jobs, their channel blocks; NHWC: once per thread); FP_RAN_FINITE or
 * FP_RAN_NONFINITE. */
int fp_dw_drive_unpacked(const fp_dw_ukernel *k, const fp_conv_problem *p, const float *x, const float *w,
                         const float *bias, float *y);

#endif
