/* The generic algorithm's rows of the kernel table (csrc/kernel_table.c): direct loops over every
 * problem, float32 and float64, in portable C (conv_generic_impl.h). */
#ifndef FP_GENERIC_H
#define FP_GENERIC_H
#include "../internal.h"
#include "../kernel_table.h"

typedef struct fp_generic_kernel {
    fp_kernel k;
    void (*pack)(const fp_conv_problem *p, const void *w, void *dst);
    int (*run)(const fp_conv_problem *p, const void *x, const void *packed, const void *bias, void *y);
} fp_generic_kernel;

extern const fp_generic_kernel fp_f32_generic__scalar;
extern const fp_generic_kernel fp_f64_generic__scalar;

#endif
