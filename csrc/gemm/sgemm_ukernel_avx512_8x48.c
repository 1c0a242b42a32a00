/* AVX-512 micro-kernel: an 8 x 48 tile of C in 24 zmm accumulators (8 rows x 3 vectors of 16).
 * Per k: 3 vector loads of B, 8 broadcasts of A, 24 FMAs.  Tail columns use masked loads and stores,
 * and tiles narrower than 33 columns run a 1- or 2-vector instance, so no lane work is wasted beyond
 * the last vector.  Rows past mr are computed on repeated/zero data and never stored. */
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#include <immintrin.h>

#include "gemm.h"

#define MR 8
#define NR 48

static inline __attribute__((always_inline)) void body(const fp_ukr_args *u, const int NV, const int ROWS) {
    __m512 acc[MR][3];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    const int64_t tail = u->nr - (int64_t)(NV - 1) * 16;
    const __mmask16 mlast = tail >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << tail) - 1u);
    const float *b = u->b;
    const int64_t ldb = u->ldb, kc = u->kc;
    if (ROWS) {
        const float *r0 = u->arows[0], *r1 = u->arows[1], *r2 = u->arows[2], *r3 = u->arows[3];
        const float *r4 = u->arows[4], *r5 = u->arows[5], *r6 = u->arows[6], *r7 = u->arows[7];
#pragma GCC unroll 2
        for (int64_t k = 0; k < kc; k++) {
            __m512 bv[3];
            for (int v = 0; v < NV; v++)
                bv[v] = v < NV - 1 ? _mm512_loadu_ps(b + 16 * v) : _mm512_maskz_loadu_ps(mlast, b + 16 * v);
            const float av[MR] = {r0[k], r1[k], r2[k], r3[k], r4[k], r5[k], r6[k], r7[k]};
            for (int i = 0; i < MR; i++) {
                const __m512 a = _mm512_set1_ps(av[i]);
                for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
            }
            b += ldb;
        }
    } else {
        const float *a = u->a;
#pragma GCC unroll 2
        for (int64_t k = 0; k < kc; k++) {
            __m512 bv[3];
            for (int v = 0; v < NV; v++)
                bv[v] = v < NV - 1 ? _mm512_loadu_ps(b + 16 * v) : _mm512_maskz_loadu_ps(mlast, b + 16 * v);
            _mm_prefetch((const char *)(a + 8 * MR), _MM_HINT_T0);
            for (int i = 0; i < MR; i++) {
                const __m512 av = _mm512_set1_ps(a[i]);
                for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
            }
            a += MR;
            b += ldb;
        }
    }
    /* Epilogue: C is written, and read back only when this is not the first k block. */
    const __m512 zero = _mm512_setzero_ps();
    for (int i = 0; i < MR; i++) {
        if (i >= u->mr) break;
        float *c = u->c + i * u->ldc;
        for (int v = 0; v < NV; v++) {
            const __mmask16 m = v < NV - 1 ? (__mmask16)0xFFFF : mlast;
            __m512 r = acc[i][v];
            if (!u->first) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c + 16 * v));
            else if (u->bias) {
                if (u->bias_per_col) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, u->bias + 16 * v));
                else r = _mm512_add_ps(r, _mm512_set1_ps(u->bias[i]));
            }
            if (u->relu) r = _mm512_max_ps(zero, r); /* second operand returned on NaN: NaN stays */
            _mm512_mask_storeu_ps(c + 16 * v, m, r);
        }
    }
}

static void k1p(const fp_ukr_args *u) { body(u, 1, 0); }
static void k2p(const fp_ukr_args *u) { body(u, 2, 0); }
static void k3p(const fp_ukr_args *u) { body(u, 3, 0); }
static void k1r(const fp_ukr_args *u) { body(u, 1, 1); }
static void k2r(const fp_ukr_args *u) { body(u, 2, 1); }
static void k3r(const fp_ukr_args *u) { body(u, 3, 1); }

static void run(const fp_ukr_args *u) {
    const int nv = (int)((u->nr + 15) / 16);
    if (u->arows) {
        if (nv == 3) k3r(u); else if (nv == 2) k2r(u); else k1r(u);
    } else {
        if (nv == 3) k3p(u); else if (nv == 2) k2p(u); else k1p(u);
    }
}

const fp_sgemm_ukr fp_sgemm_ukr_avx512_8x48 = {"avx512_8x48", MR, NR, run};
#endif
