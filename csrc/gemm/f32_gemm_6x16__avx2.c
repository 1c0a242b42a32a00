/* AVX2+FMA micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators (6 rows x 2 vectors of 8).
 * Per k: 2 vector loads of B, 6 broadcasts of A, 12 FMAs.  Full tiles use plain loads; the last
 * vector of a tail tile uses maskload/maskstore, so nothing past column nr is touched.  Named
 * accumulators (not an array) so that GCC keeps them in registers. */
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include <immintrin.h>

#include "../isa_target.h"
#include "gemm.h"
FP_TARGET_AVX2

#define MR 6
#define NR 16

#define UPD(i, ptr)                                                  \
    do {                                                             \
        const __m256 a_ = _mm256_broadcast_ss(ptr);                  \
        c##i##0 = _mm256_fmadd_ps(a_, b0, c##i##0);                  \
        if (NV > 1) c##i##1 = _mm256_fmadd_ps(a_, b1, c##i##1);      \
    } while (0)

static inline __attribute__((always_inline)) __m256 load(const float *p, const int masked, __m256i m) {
    return masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
}

static inline __attribute__((always_inline)) void store_row(const fp_ukr_args *u, int64_t i, const int NV,
                                                           const int MASKED, __m256i m, __m256 r0, __m256 r1) {
    float *c = u->c + i * u->ldc;
    const __m256 zero = _mm256_setzero_ps();
    __m256 r[2] = {r0, r1};
    for (int v = 0; v < NV; v++) {
        const int mk = MASKED && v == NV - 1;
        __m256 x = r[v];
        if (!u->first) x = _mm256_add_ps(x, load(c + 8 * v, mk, m));
        else if (u->bias) {
            if (u->bias_per_col) x = _mm256_add_ps(x, load(u->bias + 8 * v, mk, m));
            else x = _mm256_add_ps(x, _mm256_set1_ps(u->bias[i]));
        }
        if (u->relu) x = _mm256_max_ps(zero, x); /* max returns its 2nd operand on NaN */
        if (mk) _mm256_maskstore_ps(c + 8 * v, m, x);
        else _mm256_storeu_ps(c + 8 * v, x);
    }
}

static inline __attribute__((always_inline)) void body(const fp_ukr_args *u, const int NV, const int ROWS,
                                                      const int MASKED) {
    const __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z,
           c51 = z;
    const int64_t tail = u->nr - (int64_t)(NV - 1) * 8;
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(tail > 8 ? 8 : tail)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const float *b = u->b;
    const int64_t ldb = u->ldb, kc = u->kc;
    if (ROWS) {
        const float *r0 = u->arows[0], *r1 = u->arows[1], *r2 = u->arows[2];
        const float *r3 = u->arows[3], *r4 = u->arows[4], *r5 = u->arows[5];
        for (int64_t k = 0; k < kc; k++) {
            const __m256 b0 = load(b, MASKED && NV == 1, m);
            const __m256 b1 = NV > 1 ? load(b + 8, MASKED, m) : z;
            UPD(0, r0 + k); UPD(1, r1 + k); UPD(2, r2 + k); UPD(3, r3 + k); UPD(4, r4 + k); UPD(5, r5 + k);
            b += ldb;
        }
    } else {
        const float *a = u->a;
        for (int64_t k = 0; k < kc; k++) {
            const __m256 b0 = load(b, MASKED && NV == 1, m);
            const __m256 b1 = NV > 1 ? load(b + 8, MASKED, m) : z;
            UPD(0, a); UPD(1, a + 1); UPD(2, a + 2); UPD(3, a + 3); UPD(4, a + 4); UPD(5, a + 5);
            a += MR;
            b += ldb;
        }
    }
    if (u->mr > 0) store_row(u, 0, NV, MASKED, m, c00, c01);
    if (u->mr > 1) store_row(u, 1, NV, MASKED, m, c10, c11);
    if (u->mr > 2) store_row(u, 2, NV, MASKED, m, c20, c21);
    if (u->mr > 3) store_row(u, 3, NV, MASKED, m, c30, c31);
    if (u->mr > 4) store_row(u, 4, NV, MASKED, m, c40, c41);
    if (u->mr > 5) store_row(u, 5, NV, MASKED, m, c50, c51);
}

static void full_p(const fp_ukr_args *u) { body(u, 2, 0, 0); }
static void full_r(const fp_ukr_args *u) { body(u, 2, 1, 0); }
static void t1p(const fp_ukr_args *u) { body(u, 1, 0, 1); }
static void t2p(const fp_ukr_args *u) { body(u, 2, 0, 1); }
static void t1r(const fp_ukr_args *u) { body(u, 1, 1, 1); }
static void t2r(const fp_ukr_args *u) { body(u, 2, 1, 1); }

static void run(const fp_ukr_args *u) {
    const int rows = u->arows != NULL;
    if (u->nr == NR) { if (rows) full_r(u); else full_p(u); return; }
    if (u->nr > 8) { if (rows) t2r(u); else t2p(u); }
    else { if (rows) t1r(u); else t1p(u); }
}

const fp_sgemm_ukr fp_f32_gemm_6x16__avx2 = {FP_SGEMM_ROW("f32_gemm_6x16__avx2", FP_ISA_AVX2, MR, NR), run, 0};
FP_TARGET_END
#endif
