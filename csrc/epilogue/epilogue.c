/* The call's epilogue: resolving fp_epilogue (fastpoint.h) for a dtype and ISA, and this thread's current
 * one (read by the algorithms on the calling thread; see epilogue.h). */
#include "epilogue.h"

static _Thread_local const fp_ep *current;

const fp_ep *fp_ep_current(void) { return current; }

const fp_ep *fp_ep_enter(const fp_ep *ep) {
    const fp_ep *prev = current;
    current = ep;
    return prev;
}

static fp_ep_tile_fn tile_for(int isa, int f64) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (isa >= FP_ISA_AVX512) return fp_ep_tiles_avx512[f64];
    if (isa >= FP_ISA_AVX2) return fp_ep_tiles_avx2[f64];
#endif
    (void)isa;
    return fp_ep_tiles_scalar[f64];
}

int fp_ep_resolve(const fp_epilogue *e, int f64, int isa, const void *y, int *relu, fp_ep *ep) {
    int kind = e ? e->kind : FP_ACT_NONE;
    if (kind == FP_ACT_NONE && *relu) kind = FP_ACT_RELU; /* the problem's flag, with a residual */
    const int has_res = e && e->residual;
    if (!has_res && (kind == FP_ACT_NONE || kind == FP_ACT_RELU)) {
        *relu = kind == FP_ACT_RELU; /* the kernels' own fused ReLU */
        return 0;
    }
    *relu = 0;
    ep->kind = kind;
    ep->has_res = has_res;
    ep->a64 = e->alpha;
    ep->b64 = e->beta;
    ep->a32 = (float)e->alpha;
    ep->b32 = (float)e->beta;
    ep->slope = e->slope;
    ep->res_bytes = has_res ? (intptr_t)e->residual - (intptr_t)y : 0;
    ep->tile = tile_for(isa, f64);
    return 1;
}
