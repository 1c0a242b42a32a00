/* The generic algorithm: applies to every problem, in float32 and float64 (see conv_generic_impl.h). */
#include <string.h>

#include "../epilogue/epilogue.h"
#include "generic.h"

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

/* The table row of one dtype: typed loops behind the row's untyped functions. */
#define GENERIC_ROW(SFX, TY, F64)                                                                         \
    static void pack_##SFX(const fp_conv_problem *p, const void *w, void *dst) {                          \
        generic_pack_##SFX(p, (const TY *)w, (TY *)dst);                                                  \
    }                                                                                                     \
    static int run_##SFX(const fp_conv_problem *p, const void *x, const void *w, const void *b, void *y) { \
        return p->layout == 0 ? generic_nchw_##SFX(p, x, w, b, y) : generic_nhwc_##SFX(p, x, w, b, y);    \
    }                                                                                                     \
    const fp_generic_kernel fp_##SFX##_generic__scalar = {                                                \
        {#SFX "_generic__scalar", "generic", F64, FP_ISA_SCALAR, 0, 0}, pack_##SFX, run_##SFX};
GENERIC_ROW(f32, float, 0)
GENERIC_ROW(f64, double, 1)

static const fp_generic_kernel *pick(int isa, int f64) {
    return (const fp_generic_kernel *)fp_kernel_pick("generic", f64, isa); /* the row starts the struct */
}

static int applies(const fp_conv_problem *p, int isa, int f64) { (void)p; (void)isa; (void)f64; return 1; }

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)p;
    return pick(isa, f64)->k.name;
}

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    return (int64_t)(f64 ? sizeof(double) : sizeof(float)) * p->cout * (p->cin / p->groups) * p->kh * p->kw;
}

static int pack(const fp_conv_problem *p, int isa, int f64, const void *w, void *dst) {
    pick(isa, f64)->pack(p, w, dst);
    return FP_OK;
}

static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias, void *y) {
    return pick(isa, f64)->run(p, x, packed, bias, y);
}

const fp_algo fp_algo_generic = {"generic", applies, kernel_name, packed_bytes, pack, run, "generic"};
