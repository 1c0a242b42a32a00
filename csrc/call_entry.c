/* The one-shot call's C entry (fastpoint/core/callplan.py, docs/call-path.md): the per-call argument
 * checks a cached parse cannot answer, then the call, in one crossing of the cffi boundary.
 *
 * A one-shot plan is cached on the argument facts (shapes, dtypes, strides, flags); what two arrays of
 * the same facts can still differ in is their memory: contiguity (cffi's from_buffer refuses a
 * non-C-contiguous or, for the output, read-only array), alignment and overlap, which are checked here,
 * where each is a compare of two integers (a NumPy flags read or np.may_share_memory costs 0.1 us each
 * in Python).  A call that fails one returns FP_CALL_EXACT having read and written nothing, and the
 * caller takes its exact path (a copy, or the error naming the argument). */
#include "internal.h"

static int misaligned(const void *a, size_t size) { return a != NULL && ((uintptr_t)a & (size - 1)) != 0; }

/* Whether [a, a + na) and [b, b + nb) share a byte (empty ranges meet nothing). */
static int meets(const void *a, int64_t na, const void *b, int64_t nb) {
    if (a == NULL || b == NULL || na <= 0 || nb <= 0) return 0;
    const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + (uintptr_t)nb && b0 < a0 + (uintptr_t)na;
}

int fp_call_once(const fp_conv_problem *p, int f64, const void *x, const void *w, const void *bias, void *y,
                 int check_finite) {
    const size_t es = f64 ? 8 : 4;
    if (misaligned(x, es) || misaligned(w, es) || misaligned(bias, es) || misaligned(y, es)) return FP_CALL_EXACT;
    const int64_t ny = p->n * p->cout * p->oh * p->ow * (int64_t)es;
    const int64_t nx = p->n * p->cin * p->h * p->w * (int64_t)es;
    const int64_t nw = p->cout * (p->cin / p->groups) * p->kh * p->kw * (int64_t)es;
    if (meets(y, ny, x, nx) || meets(y, ny, w, nw) || meets(y, ny, bias, p->cout * (int64_t)es)) return FP_CALL_EXACT;
    if (p->n == 0) return 0; /* batch 0: no kernel runs, nothing to fix up */
    return f64 ? fp_conv_once_f64(p, (const double *)x, (const double *)w, (const double *)bias, (double *)y,
                                  check_finite)
               : fp_conv_once_f32(p, (const float *)x, (const float *)w, (const float *)bias, (float *)y,
                                  check_finite);
}
