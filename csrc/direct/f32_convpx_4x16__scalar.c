/* Portable convpx micro-kernel: 4 output channels x 16 output pixels in plain C (the 16-pixel loops
 * vectorize with whatever the baseline ISA offers). */
#include "direct_px.h"

#define SMC 4
#define SPX 16

/* The in-register activations, as csrc/epilogue/epilogue_impl.h writes them (NaN kept). */
static inline float act(float v, int kind, float a, float b) {
    switch (kind) {
    case FP_ACT_RELU: return v < 0 ? 0.0f : v;
    case FP_ACT_CLIP: return v < a ? a : v > b ? b : v;
    case FP_ACT_LEAKY: return v < 0 ? a * v : v;
    case FP_ACT_HARDSWISH: return v <= -3.0f ? 0.0f : v >= 3.0f ? v : v * (v + 3.0f) * (float)(1.0 / 6.0);
    default: return v;
    }
}

static void scalar_tile(const fp_pxtile *a) {
    float acc[SMC][SPX];
    const int64_t np = a->npx;
    for (int c = 0; c < SMC; c++)
        for (int j = 0; j < SPX; j++) acc[c][j] = a->bias[c];
    const float *px = a->pix;
    for (int64_t ci = 0; ci < a->cin; ci++) {
        const float *wc = a->w + ci * a->ntaps * a->wstep;
        for (int64_t t = a->t0; t < a->t1; t++) {
            const float *xp = px + a->toff[t];
            const float *wt = wc + t * a->wstep;
            for (int c = 0; c < SMC; c++)
                for (int64_t j = 0; j < np; j++) acc[c][j] += xp[j] * wt[c];
        }
        px += a->cs;
    }
    for (int c = 0; c < SMC; c++)
        for (int64_t j = 0; j < np; j++) a->out[c * a->ocs + j] = act(acc[c][j], a->act, a->alpha, a->beta);
}

static fp_pxkernel kernel_scalar(int nv, int masked) {
    (void)nv; (void)masked;
    return scalar_tile;
}

const fp_px_ukr fp_f32_convpx_4x16__scalar = {{"f32_convpx_4x16__scalar", "convpx", 0, FP_ISA_SCALAR, 4, 16},
                                              SMC, SPX, 1, kernel_scalar};
