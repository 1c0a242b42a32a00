/* Direct (im2col-free) KxK convolution, float32: the tile contract between the driver (direct.c)
 * and the per-ISA micro-kernels.
 *
 * A tile is `rw` consecutive output pixels of one output row times `nb` blocks of 16 output channels.
 * Its input lives in a per-thread strip (see direct.c) in which consecutive output pixels read
 * consecutive floats for every tap, so pixel j of tap t and channel c is pix[c * cs + toff[t] + j]. */
#ifndef FP_DIRECT_H
#define FP_DIRECT_H
#include "../internal.h"

#define FP_DIRECT_CB 16 /* output channels per packed weight block */

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

/* Widest tile (pixels) of each ISA for nb = 1 and nb = 2 blocks, and the kernel for a width. */
int fp_direct_rwmax(int isa, int nb);
fp_dkernel fp_direct_kernel(int isa, int rw, int nb);

fp_dkernel fp_direct_kernel_avx512(int rw, int nb);

/* NCHW store of a tile kept pixel-major in tbuf (tbuf[j * ops + c]): y[c * ystride + j]. */
void fp_direct_store_nchw_avx512(const float *tbuf, int64_t ops, int rw, int64_t nch, float *y, int64_t ystride);
/* Strip fills: one NCHW row split into its two stride-2 phase rows (zero padding included), and one
 * NHWC row transposed into the strip row (channel by channel). */
void fp_direct_split2_avx512(const float *src, int64_t w, int64_t pl, int64_t wq, float *even, float *odd);
void fp_direct_fill_nhwc_avx512(const float *src, int64_t pstride, int64_t nc, int64_t w, int64_t sw, int64_t pl,
                                int64_t wq, float *dst, int64_t cs);
fp_dkernel fp_direct_kernel_avx2(int rw, int nb);
fp_dkernel fp_direct_kernel_scalar(int rw, int nb);

#endif
