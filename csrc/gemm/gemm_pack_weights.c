/* Prepacking of the weights, done once per layer (fp.Conv2d) before the input size is known.
 *   NCHW: W (Cout x Cin) is A: panels of MR output channels, each Cin x MR (k-major), rows past Cout zero.
 *   NHWC: W^T (Cin x Cout) is B: panels of NR output channels, each Cin x NR (k-major), columns past
 *         Cout zero.
 * A k block [k0, k0+kc) of a panel starts k0*MR (or k0*NR) floats into it, so any KC chosen at run time
 * reads the same packing.  For NCHW with an extended kernel the W^T panels follow the W panels: small
 * images run the transposed form Y^T = X^T W^T (vectors along Cout), chosen only once H*W is known.
 * Panels are independent: they are packed in parallel (csrc/pack.c). */
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

typedef struct panels_job {
    const fp_conv_problem *p;
    int64_t width;
    const float *w;
    float *dst;
} panels_job;

/* Panel pi: d[k * width + i] = W[pi * width + i][k], zero past Cout. */
static void pack_panel(void *ctx, int64_t pi) {
    const panels_job *j = (const panels_job *)ctx;
    const int64_t K = j->p->cin, co0 = pi * j->width;
    fp_pack_transpose(j->w + co0 * K, K, FP_MIN(j->width, j->p->cout - co0), K, j->width, j->dst + pi * K * j->width);
}

static void pack_panels(const fp_conv_problem *p, int64_t width, const float *w, float *dst) {
    panels_job j = {p, width, w, dst};
    fp_pack_jobs(p, FP_CEIL_DIV(p->cout, width), (int64_t)sizeof(float) * panels_floats(p, width), pack_panel, &j);
}

void fp_gemm_pack_weights(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *w, float *dst) {
    if (p->layout != 0) {
        pack_panels(p, uk->nr, w, dst);
        return;
    }
    /* A problem with its output size (a one-shot call, csrc/oneshot.c) packs only the form its run reads;
     * a layer packed before any input (oh = 0) needs both. */
    const int known = p->oh > 0 && p->ow > 0, transposed = known && fp_gemm_use_transposed(p, uk);
    if (!transposed) pack_panels(p, uk->mr, w, dst);
    if (uk->extended && (!known || transposed)) pack_panels(p, uk->nr, w, dst + panels_floats(p, uk->mr));
}
