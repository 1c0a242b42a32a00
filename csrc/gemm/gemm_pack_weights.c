/* Prepacking of the weights, done once per layer (fp.Conv2d) before the input size is known.
 *   NCHW: W (Cout x Cin) is A: panels of MR output channels, each Cin x MR (k-major), rows past Cout zero.
 *   NHWC: W^T (Cin x Cout) is B: panels of NR output channels, each Cin x NR (k-major), columns past
 *         Cout zero.
 * A k block [k0, k0+kc) of a panel starts k0*MR (or k0*NR) floats into it, so any KC chosen at run time
 * reads the same packing. */
#include "gemm.h"

int64_t fp_gemm_packed_floats(const fp_conv_problem *p, const fp_sgemm_ukr *uk) {
    const int64_t w = p->layout == 0 ? uk->mr : uk->nr;
    return FP_CEIL_DIV(p->cout, w) * w * p->cin;
}

void fp_gemm_pack_weights(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *w, float *dst) {
    const int64_t width = p->layout == 0 ? uk->mr : uk->nr, K = p->cin, M = p->cout;
    const int64_t panels = FP_CEIL_DIV(M, width);
    for (int64_t pi = 0; pi < panels; pi++) {
        float *d = dst + pi * K * width;
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < width; i++) {
                const int64_t co = pi * width + i;
                d[k * width + i] = co < M ? w[co * K + k] : 0.0f;
            }
    }
}
