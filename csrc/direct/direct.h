/* Direct (im2col-free) KxK convolution, float32: the tile contract between the driver (direct.c)
 * and the per-ISA micro-kernels.
 *
 * A tile is `rw` consecutive output pixels of one output row times `nb` blocks of 16 output channels.
 * Its input lives in a per-thread strip (see direct.c) in which consecutive output pixels read
 * consecutive floats for every tap, so pixel j of tap t and channel c is pix[c * cs + toff[t] + j]. */
#ifndef FP_DIRECT_H
#define FP_DIRECT_H
#include "../internal.h"
#include "../kernel_table.h"

#define FP_DIRECT_CB 16 /* output channels per packed weight block */
#define FP_DIRECT_TILE_MAX 56 /* pixels x channel blocks of the largest tile a row may declare */

typedef struct fp_dtile {
    const float *pix;    /* input of pixel 0, channel 0, tap offset 0 */
    const int64_t *toff; /* element offset of each tap (ky * kw + kx) */
    int64_t t0, t1;      /* taps [t0, t1) fall inside the image for this output row */
    int64_t ntaps;       /* kh * kw: stride of the packed weights per input channel */
    int64_t cin, cs;     /* input channels of the group, element step between them */
    const float *w;      /* packed weights of the first block: [cin][ntaps][16] */
    int64_t wblk;        /* floats between consecutive 16-channel blocks */
    const float *init;   /* accumulator start: init[j * init_ps + b * 16 + c] (bias with init_ps = 0, */
    int64_t init_ps;     /* or the partial sums of earlier input-channel chunks) */
    float *out;          /* out[j * ops + b * 16 + c] */
    int64_t ops;
    int relu;
} fp_dtile;

typedef void (*fp_dkernel)(const fp_dtile *t);

/* A row of the conv table (csrc/kernel_table.c): the common row (tile: the widest register tile, pixels
 * x channels), then what the driver needs. */
typedef struct fp_direct_ukr {
    fp_kernel k;
    int rw[3];          /* widest tile (pixels) for 1, 2 and 4 blocks of 16 channels; 0: no such instance;
                           rw[b] x blocks <= FP_DIRECT_TILE_MAX (the driver's tile buffer) */
    int chunk_cin;      /* split the reduction into chunks whose weights stay in L1 (0: one chunk) */
    fp_dkernel (*kernel)(int rw, int nb); /* the instance for rw <= rw[nb] pixels x nb blocks */
} fp_direct_ukr;

extern const fp_direct_ukr fp_f32_conv_4x16__scalar;
extern const fp_direct_ukr fp_f32_conv_6x16__avx2;
extern const fp_direct_ukr fp_f32_conv_14x32__avx512;

/* The micro-kernel to run at ISA level isa (the table's choice). */
static inline const fp_direct_ukr *fp_direct_ukr_pick(int isa) {
    return (const fp_direct_ukr *)fp_kernel_pick("conv", 0, isa); /* the row starts the struct */
}

/* NCHW store of a tile kept pixel-major in tbuf (tbuf[j * ops + c]): y[c * ystride + j]. */
void fp_direct_store_nchw_avx512(const float *tbuf, int64_t ops, int rw, int64_t nch, float *y, int64_t ystride);
/* Its inverse (a residual of the NCHW output into a pixel-major tile): buf[j * ops + c] = y[c * ystride + j]. */
void fp_direct_load_nchw_avx512(const float *y, int64_t ystride, int rw, int64_t nch, float *buf, int64_t ops);
/* Strip fills: one NCHW row split into its two stride-2 phase rows (zero padding included), and one
 * NHWC row transposed into the strip row (channel by channel). */
void fp_direct_split2_avx512(const float *src, int64_t w, int64_t pl, int64_t wq, float *even, float *odd);
void fp_direct_fill_nhwc_avx512(const float *src, int64_t pstride, int64_t nc, int64_t w, int64_t sw, int64_t pl,
                                int64_t wq, float *dst, int64_t cs);

/* The input strip shared by the direct drivers (direct.c, direct_px.c): cin_g channels of rows split into
 * stride phases of Wq columns, cs floats between channels, rs between rows ([row][channel][phase][Wq]). */
typedef struct fp_dstrip {
    int64_t cin_g, Wq, cs, rs;
} fp_dstrip;
/* Whether the strip serves p (float32, neither depthwise nor a plain 1x1, strides, dilations and
 * paddings within the strip's bounds). */
int fp_direct_strip_applies(const fp_conv_problem *p, int f64);
/* Input rows [iy0, iy0 + nrows) of image n, group g into the strip, zero-padded, split by stride phase. */
void fp_direct_fill_strip(const fp_conv_problem *p, const fp_dstrip *S, int isa, const float *x, int64_t n,
                          int64_t g, int64_t iy0, int64_t nrows, float *strip);
/* Strip offset of each tap (ky * kw + kx) from an output pixel's first input; the taps [t0, t1) of output
 * row oy whose input rows fall inside the image. */
void fp_direct_tap_offsets(const fp_conv_problem *p, int64_t Wq, int64_t rs, int64_t *toff);
void fp_direct_row_taps(const fp_conv_problem *p, int64_t oy, int64_t *t0, int64_t *t1);

#endif
