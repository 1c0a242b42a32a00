/* AVX-512 tail of the swapped-operand one-shot GEMM (gemm_once_wrows.h): 16 rows of W transposed 16 x 16 at
 * a time in registers (fp_tr16_load_ps: 64 quad loads and 32 shuffles a block, nothing stored), each of the
 * block's 16 k steps one FMA per tail pixel into 16-lane sums.  The sums are chains in k order from zero,
 * as in the prepacked layer's tiles; the caller adds the bias or the previous k block's sum. */
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX512
#include <immintrin.h>

#include "../transpose16_avx512.h"
#include "gemm_once_wrows.h"

/* k step kk of a block: W^T vector r[kk] times each tail pixel's input at that k */
#define STEP(kk)                                                                           \
    do {                                                                                   \
        s0 = _mm512_fmadd_ps(r[kk], _mm512_set1_ps(x[(kk) * NT]), s0);                     \
        if (NT > 1) s1 = _mm512_fmadd_ps(r[kk], _mm512_set1_ps(x[(kk) * NT + 1]), s1);     \
        if (NT > 2) s2 = _mm512_fmadd_ps(r[kk], _mm512_set1_ps(x[(kk) * NT + 2]), s2);     \
        if (NT > 3) s3 = _mm512_fmadd_ps(r[kk], _mm512_set1_ps(x[(kk) * NT + 3]), s3);     \
    } while (0)

static inline __attribute__((always_inline)) void tail(const float *w, int64_t ld, int64_t kc, const float *xt,
                                                       const int NT, float *sums) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    __m512 r[16];
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        const int cw = kc - k0 < 16 ? (int)(kc - k0) : 16;
        const float *x = xt + k0 * NT;
        if (cw == 16) {
            fp_tr16_load_ps(w + k0, ld, 16, r);
#pragma GCC unroll 16
            for (int kk = 0; kk < 16; kk++) STEP(kk);
        } else {
            fp_tr16_load_ps(w + k0, ld, cw, r);
            for (int kk = 0; kk < cw; kk++) STEP(kk);
        }
    }
    _mm512_storeu_ps(sums, s0);
    if (NT > 1) _mm512_storeu_ps(sums + 16, s1);
    if (NT > 2) _mm512_storeu_ps(sums + 32, s2);
    if (NT > 3) _mm512_storeu_ps(sums + 48, s3);
}

void fp_wrows_tail16_avx512(const float *w, int64_t ld, int64_t kc, const float *xt, int nt, float *sums) {
    switch (nt) {
    case 1: tail(w, ld, kc, xt, 1, sums); break;
    case 2: tail(w, ld, kc, xt, 2, sums); break;
    case 3: tail(w, ld, kc, xt, 3, sums); break;
    default: tail(w, ld, kc, xt, 4, sums); break;
    }
}
void fp_wrows_store_nhwc_avx512(const float *tile, int64_t ldt, int64_t mr, int64_t nr, const float *bias, int first,
                                int relu, float *y, int64_t ldy) {
    const __mmask16 rows = (__mmask16)((1u << mr) - 1u);
    const __m512 b = !first || !bias ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows, bias);
    for (int64_t q0 = 0; q0 < nr; q0 += 16) {
        const int64_t n = FP_MIN(16, nr - q0);
        const __mmask16 cols = n == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < mr ? _mm512_maskz_loadu_ps(cols, tile + i * ldt + q0) : _mm512_setzero_ps();
        fp_tr16_ps(r); /* r[q] lane i: channel i of pixel q0 + q */
        for (int64_t q = 0; q < n; q++) {
            float *o = y + (q0 + q) * ldy;
            __m512 v = r[q];
            v = _mm512_add_ps(v, first ? b : _mm512_maskz_loadu_ps(rows, o));
            if (relu) v = _mm512_max_ps(_mm512_setzero_ps(), v); /* max returns its 2nd operand on NaN */
            _mm512_mask_storeu_ps(o, rows, v);
        }
    }
}
FP_TARGET_END
#endif
