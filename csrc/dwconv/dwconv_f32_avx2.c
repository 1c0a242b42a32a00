/* Depthwise convolution for AVX2+FMA: the plain-C loops of dwconv_c_impl.h, whose inner loops run
 * along contiguous columns (NCHW) or channels (NHWC), compiled for 256-bit FMA. */
#include "dwconv.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
#define DW_FN(name) dw256_##name
#include "dwconv_c_impl.h"

int fp_dwconv_run_avx2(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return p->layout == 0 ? dw256_nchw(p, x, w, bias, y) : dw256_nhwc(p, x, w, bias, y);
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
int fp_dwconv_run_avx2(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return fp_dwconv_run_c(p, x, w, bias, y);
}
#endif
