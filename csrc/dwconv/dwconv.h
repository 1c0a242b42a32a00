/* Depthwise convolution (groups = cin, cout = multiplier * cin), float32, NCHW and NHWC.
 * Memory-bound by nature (about 2 flop per byte moved for 3x3), so it is judged in GB/s.
 *
 * Packed weights, both layouts: [kh*kw][cout padded to 16], so one vector load gives 16 output
 * channels of one tap (every kernel vectorizes along channels, NCHW on transposed tiles). */
#ifndef FP_DWCONV_H
#define FP_DWCONV_H
#include "../internal.h"

#define FP_DW_CB 16

static inline int64_t fp_dw_cpad(const fp_conv_problem *p) { return FP_CEIL_DIV(p->cout, FP_DW_CB) * FP_DW_CB; }

int fp_dwconv_run_avx512(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);
int fp_dwconv_run_avx2(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);
int fp_dwconv_run_c(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);

#endif
