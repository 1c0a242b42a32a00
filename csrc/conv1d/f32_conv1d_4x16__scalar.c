/* The portable conv1d micro-kernel (conv1d.h): 4 output channels x 16 positions, what the compiler
 * vectorizes from the loops at the baseline ISA. */
#include "conv1d.h"

#define MR 4
#define NR 16

static void run(const fp_conv1d_args *a) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = a->bias ? a->bias[i] : 0.0f;
    const float *w = a->w;
    for (int64_t ci = 0; ci < a->cin; ci++) {
        const float *xc = a->x + ci * a->ldx;
        for (int64_t t = 0; t < a->taps; t++, w += MR) {
            const float *xt = xc + a->toff[t];
            for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++) acc[i][j] += w[i] * xt[j];
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            const float v = acc[i][j];
            a->y[i * a->ldy + j] = a->relu && v < 0.0f ? 0.0f : v; /* NaN stays NaN */
        }
}

const fp_conv1d_ukr fp_f32_conv1d_4x16__scalar = {FP_CONV1D_ROW("f32_conv1d_4x16__scalar", FP_ISA_SCALAR, 4, 16), run};
