/* The call's epilogue: resolving fp_epilogue (fastpoint.h) for a dtype and ISA, and this thread's current
 * one (read by the algorithms on the calling thread; see epilogue.h). */
#include <string.h>

#include "epilogue.h"

static _Thread_local const fp_ep *current;

const fp_ep *fp_ep_current(void) { return current; }

const fp_ep *fp_ep_enter(const fp_ep *ep) {
    const fp_ep *prev = current;
    current = ep;
    return prev;
}

static void kernels_for(int isa, int f64, fp_ep *ep) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (isa >= FP_ISA_AVX512) {
        ep->tile = fp_ep_tiles_avx512[f64], ep->copy = fp_ep_copy_avx512;
        return;
    }
    if (isa >= FP_ISA_AVX2) {
        ep->tile = fp_ep_tiles_avx2[f64], ep->copy = fp_ep_copy_avx2;
        return;
    }
#endif
    (void)isa;
    ep->tile = fp_ep_tiles_scalar[f64], ep->copy = fp_ep_copy_scalar;
}

void fp_ep_copy_scalar(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream) {
    (void)stream;
    for (int64_t i = 0; i < rows; i++) memcpy(dst + i * ld, src + i * lds, sizeof(float) * (size_t)cols);
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
    kernels_for(isa, f64, ep);
    return 1;
}
