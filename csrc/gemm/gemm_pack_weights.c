/* Prepacking of the weights, done once per layer (fp.Conv2d) before the input size is known.
 *   NCHW: W (Cout x Cin) is A: panels of MR output channels, each Cin x MR (k-major), rows past Cout zero.
 *   NHWC: W^T (Cin x Cout) is B: panels of NR output channels, each Cin x NR (k-major), columns past
 *         Cout zero.
 * A k block [k0, k0+kc) of a panel starts k0*MR (or k0*NR) floats into it, so any KC chosen at run time
 * reads the same packing.  For NCHW with an extended kernel the W^T panels follow the W panels: small
 * images run the transposed form Y^T = X^T W^T (vectors along Cout), chosen only once H*W is known. */
#include "gemm.h"

static int64_t panels_floats(const fp_conv_problem *p, int64_t width) {
    return FP_CEIL_DIV(p->cout, width) * width * p->cin;
}

int64_t fp_gemm_packed_floats(const fp_conv_problem *p, const fp_sgemm_ukr *uk) {
    if (p->layout != 0) return panels_floats(p, uk->nr);
    return panels_floats(p, uk->mr) + (uk->extended ? panels_floats(p, uk->nr) : 0);
}

const float *fp_gemm_packed_wt(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *packed) {
    return p->layout != 0 ? packed : packed + panels_floats(p, uk->mr);
}

static void pack_panels(const fp_conv_problem *p, int64_t width, const float *w, float *dst) {
    const int64_t K = p->cin, M = p->cout;
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

void fp_gemm_pack_weights(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *w, float *dst) {
    if (p->layout != 0) {
        pack_panels(p, uk->nr, w, dst);
        return;
    }
    pack_panels(p, uk->mr, w, dst);
    if (uk->extended) pack_panels(p, uk->nr, w, dst + panels_floats(p, uk->mr));
}
