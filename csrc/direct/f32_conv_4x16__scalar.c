/* Portable direct-convolution micro-kernel: 4 pixels x 16 channels in plain C (the compiler
 * vectorizes the 16-lane loops with whatever the baseline ISA offers). */
#include "direct.h"

static void scalar_tile(const fp_dtile *a, int rw, int nb) {
    float acc[4][2 * FP_DIRECT_CB];
    const int nc = nb * FP_DIRECT_CB;
    for (int j = 0; j < rw; j++)
        for (int c = 0; c < nc; c++) acc[j][c] = a->init[j * a->init_ps + c];
    const float *px = a->pix;
    for (int64_t ci = 0; ci < a->cin; ci++) {
        const float *wc = a->w + ci * a->ntaps * FP_DIRECT_CB;
        for (int64_t t = a->t0; t < a->t1; t++) {
            const float *xp = px + a->toff[t];
            for (int b = 0; b < nb; b++) {
                const float *wt = wc + t * FP_DIRECT_CB + b * a->wblk;
                for (int j = 0; j < rw; j++) {
                    const float xv = xp[j];
                    for (int c = 0; c < FP_DIRECT_CB; c++) acc[j][b * FP_DIRECT_CB + c] += xv * wt[c];
                }
            }
        }
        px += a->cs;
    }
    for (int j = 0; j < rw; j++)
        for (int c = 0; c < nc; c++) {
            const float v = acc[j][c];
            a->out[j * a->ops + c] = a->relu ? (v < 0 ? 0.0f : v) : v;
        }
}

static void s_1x1(const fp_dtile *a) { scalar_tile(a, 1, 1); }
static void s_2x1(const fp_dtile *a) { scalar_tile(a, 2, 1); }
static void s_3x1(const fp_dtile *a) { scalar_tile(a, 3, 1); }
static void s_4x1(const fp_dtile *a) { scalar_tile(a, 4, 1); }
static void s_1x2(const fp_dtile *a) { scalar_tile(a, 1, 2); }
static void s_2x2(const fp_dtile *a) { scalar_tile(a, 2, 2); }

static fp_dkernel kernel_scalar(int rw, int nb) {
    static const fp_dkernel k1[] = {s_1x1, s_2x1, s_3x1, s_4x1};
    static const fp_dkernel k2[] = {s_1x2, s_2x2};
    return nb >= 2 ? k2[rw - 1] : k1[rw - 1];
}

/* No reduction chunks: the portable kernel gained nothing from them. */
const fp_direct_ukr fp_f32_conv_4x16__scalar = {{"f32_conv_4x16__scalar", "conv", 0, FP_ISA_SCALAR, 4, 16}, {4, 2, 0}, 0,
                                                kernel_scalar};
