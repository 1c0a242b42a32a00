/* AVX2+FMA micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators (6 rows x 2 vectors of 8).
 * Per k: 2 vector loads of B, 6 broadcasts of A, 12 FMAs.  Full tiles use plain loads; the last
 * vector of a tail tile uses maskload/maskstore, so nothing past column nr is touched. */
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "gemm.h"

#define MR 6
#define NR 16

static inline __attribute__((always_inline)) void body(const fp_ukr_args *u, const int NV, const int ROWS,
                                                      const int MASKED) {
    __m256 acc[MR][2];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
    const int64_t tail = u->nr - (int64_t)(NV - 1) * 8;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mlast = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(tail > 8 ? 8 : tail)), lanes);
    const float *b = u->b;
    const int64_t ldb = u->ldb, kc = u->kc;
    const float *r[MR];
    const float *a = u->a;
    if (ROWS)
        for (int i = 0; i < MR; i++) r[i] = u->arows[i];
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        __m256 bv[2];
        for (int v = 0; v < NV; v++)
            bv[v] = (MASKED && v == NV - 1) ? _mm256_maskload_ps(b + 8 * v, mlast) : _mm256_loadu_ps(b + 8 * v);
        for (int i = 0; i < MR; i++) {
            const __m256 av = _mm256_broadcast_ss(ROWS ? r[i] + k : a + i);
            for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
        }
        if (!ROWS) a += MR;
        b += ldb;
    }
    const __m256 zero = _mm256_setzero_ps();
    for (int i = 0; i < MR; i++) {
        if (i >= u->mr) break;
        float *c = u->c + i * u->ldc;
        for (int v = 0; v < NV; v++) {
            const int mk = MASKED && v == NV - 1;
            __m256 x = acc[i][v];
            if (!u->first) x = _mm256_add_ps(x, mk ? _mm256_maskload_ps(c + 8 * v, mlast) : _mm256_loadu_ps(c + 8 * v));
            else if (u->bias) {
                if (u->bias_per_col)
                    x = _mm256_add_ps(x, mk ? _mm256_maskload_ps(u->bias + 8 * v, mlast) : _mm256_loadu_ps(u->bias + 8 * v));
                else x = _mm256_add_ps(x, _mm256_set1_ps(u->bias[i]));
            }
            if (u->relu) x = _mm256_max_ps(zero, x); /* second operand returned on NaN: NaN stays */
            if (mk) _mm256_maskstore_ps(c + 8 * v, mlast, x);
            else _mm256_storeu_ps(c + 8 * v, x);
        }
    }
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

const fp_sgemm_ukr fp_sgemm_ukr_avx2_6x16 = {"avx2_6x16", MR, NR, run};
#endif
