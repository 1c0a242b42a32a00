/* One-shot calls (fp.conv2d / fp.conv1x1): the caller's weights, packed for this call only.
 *
 * A prepacked layer (fp.Conv2d) packs once into memory it owns.  A one-shot call packs on every call,
 * so where the packing lands decides its cost: a fresh allocation per call meant page faults on every
 * touch (glibc mmaps large blocks) and a cold cache for the kernel's first pass.  Here the packing goes
 * into the calling thread's scratch slot FP_SCRATCH_ONCE (csrc/scratch.c), grown when a call needs
 * more and reused by every later call of that thread: warm pages, no allocation.  The kernels then run
 * exactly as for a prepacked layer, so both forms give identical results.
 *
 * The non-finite check of the weights (core/nonfinite.py needs it when the call has padding) is done
 * here too, in one vectorized pass (split across the pool for large weights), so that Python never walks a
 * large weight array itself. */
#include <string.h>

#include "internal.h"

/* 1 when some of the n values at w is NaN or +-Inf, i.e. has the all-ones exponent: adding one unit of the
 * exponent's lowest bit to the exponent field carries into the sign bit exactly then.  And, add and or
 * only, so the loop vectorizes on every x86-64 (a max of the magnitudes needs SSE4.1's pmaxud and ran
 * element by element: 1 ns a float). */
#define ANY_NONFINITE(name, T, U, EXPONENT, LOWEST)                                                         \
    static int name(const T *w, int64_t n) {                                                              \
        U acc = 0;                                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            U u;                                                                                           \
            memcpy(&u, w + i, sizeof u);                                                                   \
            acc |= (u & (EXPONENT)) + (LOWEST);                                                            \
        }                                                                                                  \
        return (acc >> (8 * sizeof(U) - 1)) != 0;                                                          \
    }
ANY_NONFINITE(any_nonfinite_f32_portable, float, uint32_t, 0x7f800000u, 0x00800000u)
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
int fp_any_nonfinite_f32_avx512(const float *w, int64_t n); /* oneshot_check__avx512.c: 16 lanes at a time */
#endif
static int any_nonfinite_f32(const float *w, int64_t n) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (fp_isa() >= FP_ISA_AVX512) return fp_any_nonfinite_f32_avx512(w, n);
#endif
    return any_nonfinite_f32_portable(w, n);
}
int fp_any_nonfinite_f32(const float *w, int64_t n) { return any_nonfinite_f32(w, n); }
ANY_NONFINITE(any_nonfinite_f64, double, uint64_t, 0x7ff0000000000000ull, 0x0010000000000000ull)

/* The check of a large weight runs in blocks across the pool, as packing does. */
#define CHECK_BLOCK 16384

typedef struct check_job {
    const void *w;
    int64_t n;
    int f64, bad;
} check_job;

static void check_block(void *ctx, int64_t job) {
    check_job *j = (check_job *)ctx;
    const int64_t lo = job * CHECK_BLOCK, len = FP_MIN(CHECK_BLOCK, j->n - lo);
    const int bad = j->f64 ? any_nonfinite_f64((const double *)j->w + lo, len)
                           : any_nonfinite_f32((const float *)j->w + lo, len);
    if (bad) __atomic_store_n(&j->bad, 1, __ATOMIC_RELAXED);
}

static int once(const fp_conv_problem *p, int f64, const void *x, const void *w, const void *bias, void *y,
                int check_finite) {
    int rc = fp_run_unpacked(p, f64, x, w, bias, y); /* packing fused into the kernel's loops, where it pays */
    /* the kernel's packing looked at every weight (the direct driver checks each packed block in L1) */
    if (rc == FP_RAN_FINITE || rc == FP_RAN_NONFINITE) return check_finite && rc == FP_RAN_NONFINITE;
    if (rc == FP_DECLINED) {
        void *packed = fp_scratch(FP_SCRATCH_ONCE, fp_packed_bytes(p, f64));
        if (!packed) return FP_ERR_ALLOC;
        rc = f64 ? fp_pack_f64(p, (const double *)w, packed) : fp_pack_f32(p, (const float *)w, packed);
        if (rc == FP_OK)
            rc = f64 ? fp_conv_f64(p, (const double *)x, packed, (const double *)bias, (double *)y)
                     : fp_conv_f32(p, (const float *)x, packed, (const float *)bias, (float *)y);
    }
    if (rc != FP_OK || !check_finite) return rc;
    check_job j = {w, p->cout * (p->cin / p->groups) * p->kh * p->kw, f64, 0};
    fp_pack_jobs(p, FP_CEIL_DIV(j.n, CHECK_BLOCK), j.n * (f64 ? 8 : 4), check_block, &j);
    return j.bad;
}

int fp_conv_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y,
                     int check_finite) {
    return once(p, 0, x, w, bias, y, check_finite);
}

int fp_conv_once_f64(const fp_conv_problem *p, const double *x, const double *w, const double *bias, double *y,
                     int check_finite) {
    return once(p, 1, x, w, bias, y, check_finite);
}
