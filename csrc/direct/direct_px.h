/* Direct KxK convolution with output pixels in the vector lanes, float32 (the `convpx` family, driver
 * direct_px.c): the tile contract for layers with few input channels per group (the 3-channel stems).
 *
 * A tile is up to PV vectors of consecutive output pixels of one output row times MC output channels:
 * MC x PV accumulators, each one channel's run of VL pixels.  Per (input channel, tap) it loads PV input
 * vectors from the strip of direct.c (consecutive output pixels read consecutive floats, whatever the
 * stride: the strip is split by stride phase) and broadcasts MC weights, so the reduction over
 * cin x kh x kw, only 27 or 147 steps long on a stem, keeps every lane busy from its first step. */
#ifndef FP_DIRECT_PX_H
#define FP_DIRECT_PX_H
#include "direct.h"

#define FP_PX_CHUNK 64     /* output channels buffered per pixel tile (a multiple of every row's mc) */
#define FP_PX_TILE_MAX 48  /* pixels of the widest tile a row may declare (pv x vl) */

typedef struct fp_pxtile {
    const float *pix;    /* strip input of pixel 0, channel 0, tap offset 0 */
    const int64_t *toff; /* strip offset of each tap (ky * kw + kx) */
    int64_t t0, t1;      /* taps [t0, t1) fall inside the image for this output row */
    int64_t ntaps;       /* kh * kw */
    int64_t cin, cs;     /* input channels of the group, strip floats between them */
    const float *w;      /* packed weights of the block's first channel: w[(ci * ntaps + t) * wstep + c] */
    int64_t wstep;       /* floats between consecutive (channel, tap) steps: mc (convpx packing) or
                            FP_DIRECT_CB (direct.c's packing, read mc lanes of its 16 at a time) */
    const float *bias;   /* mc accumulator starts */
    float *out;          /* out[c * ocs + j], j < npx (an NCHW output row piece, or a buffer) */
    int64_t ocs;
    int64_t npx;         /* pixels of the tile, (nv - 1) * vl < npx <= nv * vl; the last vector is loaded
                            and stored masked when npx < nv * vl, so nothing is touched past the row */
    int act;             /* activation applied in registers: FP_ACT_NONE, RELU, CLIP, LEAKY or HARDSWISH */
    float alpha, beta;   /* its parameters (fastpoint.h, FP_ACT_*) */
} fp_pxtile;

typedef void (*fp_pxkernel)(const fp_pxtile *t);

/* A row of the convpx table (csrc/kernel_table.c): the common row (tile: mc channels x pv * vl pixels). */
typedef struct fp_px_ukr {
    fp_kernel k;
    int mc, vl, pv;                        /* channels, lanes, pixel vectors of the widest tile */
    fp_pxkernel (*kernel)(int nv, int masked); /* nv in 1..pv vectors, the last one masked */
} fp_px_ukr;

extern const fp_px_ukr fp_f32_convpx_4x16__scalar;
extern const fp_px_ukr fp_f32_convpx_4x24__avx2;
extern const fp_px_ukr fp_f32_convpx_8x48__avx512;

/* Whether direct.c's layer p (NCHW, packed as direct.c packs) runs faster through the convpx row loop than
 * through its own tiles, at ISA isa: output rows of whole vectors of the convpx kernel and short reductions
 * (docs/direct.md, "Pixel lanes for narrow NCHW layers"). */
int fp_direct_px_pays(const fp_conv_problem *p, int isa);
/* The convpx row loop on weights packed by direct.c ([group][16-channel block][cin][taps][16]). */
int fp_direct_px_run16(const fp_conv_problem *p, int isa, const float *x, const float *wpk, const float *bias,
                       float *y);

#endif
