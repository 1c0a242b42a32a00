/* The 1x1 convolution as GEMM, registered as `fp_algo_gemm1x1` in the algorithm table (conv.c); its
 * micro-kernel is the gemm table's choice (csrc/kernel_table.c).  float32 only; float64 1x1 problems
 * fall through to the generic algorithm. */
#include "gemm.h"

static int applies(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    return !f64 && p->kh == 1 && p->kw == 1 && p->groups == 1 && p->pad_top == 0 && p->pad_left == 0 &&
           p->cin >= 1 && p->cout >= 1;
}

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)p; (void)f64;
    return fp_sgemm_ukr_pick(isa)->k.name;
}

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)f64;
    return (int64_t)sizeof(float) * fp_gemm_packed_floats(p, fp_sgemm_ukr_pick(isa));
}

static int pack(const fp_conv_problem *p, int isa, int f64, const void *w, void *dst) {
    (void)f64;
    fp_gemm_pack_weights(p, fp_sgemm_ukr_pick(isa), (const float *)w, (float *)dst);
    return FP_OK;
}

static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias,
               void *y) {
    (void)f64;
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(isa);
    if (p->layout == 0) return fp_gemm_run_nchw(p, uk, (const float *)x, (const float *)packed, (const float *)bias, (float *)y);
    return fp_gemm_run_nhwc(p, uk, (const float *)x, (const float *)packed, (const float *)bias, (float *)y);
}

static int run_unpacked(const fp_conv_problem *p, int isa, int f64, const void *x, const void *w, const void *bias,
                        void *y) {
    (void)f64;
    return fp_gemm_run_unpacked(p, fp_sgemm_ukr_pick(isa), (const float *)x, (const float *)w, (const float *)bias,
                                (float *)y);
}

const fp_algo fp_algo_gemm1x1 = {"gemm1x1", applies, kernel_name, packed_bytes, pack, run, "gemm", run_unpacked};
