/* The portable interleave and interleave-add (interleave.h): one pair per step. */
#include "interleave.h"

static void run(float *d, const float *a, const float *b, int64_t n) {
    for (int64_t u = 0; u < n; u++) {
        d[2 * u] = a[u];
        d[2 * u + 1] = b[u];
    }
}

static void add(float *d, const float *a, const float *b, int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; q++) d[q - lo] += (q & 1 ? b : a)[q >> 1];
}

const fp_interleave_kernel fp_f32_interleave_2x1__scalar = {FP_INTERLEAVE_ROW("f32_interleave_2x1__scalar", FP_ISA_SCALAR, 1),
                                                            run, add, NULL, NULL};
