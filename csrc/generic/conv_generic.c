/* The generic algorithm: applies to every problem, in float32 and float64 (see conv_generic_impl.h). */
#include <string.h>

#include "../internal.h"

#define T float
#define SFX f32
#include "conv_generic_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "conv_generic_impl.h"
#undef T
#undef SFX

static int applies(const fp_conv_problem *p, int isa, int f64) { (void)p; (void)isa; (void)f64; return 1; }

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    if (p->layout == 0) return f64 ? "f64_conv_generic_nchw__c" : "f32_conv_generic_nchw__c";
    return f64 ? "f64_conv_generic_nhwc__c" : "f32_conv_generic_nhwc__c";
}

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    return (int64_t)(f64 ? sizeof(double) : sizeof(float)) * p->cout * (p->cin / p->groups) * p->kh * p->kw;
}

static int pack(const fp_conv_problem *p, int isa, int f64, const void *w, void *dst) {
    (void)isa;
    if (f64) generic_pack_f64(p, (const double *)w, (double *)dst);
    else generic_pack_f32(p, (const float *)w, (float *)dst);
    return FP_OK;
}

static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias, void *y) {
    (void)isa;
    if (f64)
        return p->layout == 0 ? generic_nchw_f64(p, x, packed, bias, y) : generic_nhwc_f64(p, x, packed, bias, y);
    return p->layout == 0 ? generic_nchw_f32(p, x, packed, bias, y) : generic_nhwc_f32(p, x, packed, bias, y);
}

const fp_algo fp_algo_generic = {"generic", applies, kernel_name, packed_bytes, pack, run};
