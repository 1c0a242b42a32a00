/* AVX-512 interleave (interleave.h): 16 pairs per step, two two-source permutes; non-temporal stores
 * when d is 64-byte aligned (the caller fences before returning, fp_gemm_fence); the interleave-add the
 * same permutes added to d. */
#include <stdint.h>

#include "interleave.h"
#include "../isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include <immintrin.h>
FP_TARGET_AVX512

/* An output that is not 64-byte aligned (numpy's large arrays are 16-byte aligned: the benchmark suites' outputs
 * never streamed) streams too after its first pairs, stored one by one up to a line boundary; the last < 16
 * pairs are one masked step. */
static inline __attribute__((always_inline)) void run_inline(float *d, const float *a, const float *b, int64_t n,
                                                             int may_stream) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    int64_t u = 0;
    const uintptr_t mis = (uintptr_t)d & 63;
    int stream = may_stream && mis == 0;
    /* whole pairs up to the next line boundary, for a run that then still has a full step (24 pairs: at most 7
     * of them in the head); shorter runs keep ordinary stores */
    if (may_stream && mis % 8 == 0 && mis != 0 && n >= 24) {
        const int64_t head = (int64_t)(64 - mis) / 8;
        for (; u < head; u++) d[2 * u] = a[u], d[2 * u + 1] = b[u];
        stream = 1;
    }
    for (; u + 16 <= n; u += 16) {
        const __m512 va = _mm512_loadu_ps(a + u), vb = _mm512_loadu_ps(b + u);
        const __m512 first = _mm512_permutex2var_ps(va, lo, vb), second = _mm512_permutex2var_ps(va, hi, vb);
        if (stream) {
            _mm512_stream_ps(d + 2 * u, first);
            _mm512_stream_ps(d + 2 * u + 16, second);
        } else {
            _mm512_storeu_ps(d + 2 * u, first);
            _mm512_storeu_ps(d + 2 * u + 16, second);
        }
    }
    if (u < n) { /* the last < 16 pairs: masked loads and stores */
        const int64_t left = n - u;
        const __mmask16 m = (__mmask16)((1u << left) - 1u);
        const __m512 va = _mm512_maskz_loadu_ps(m, a + u), vb = _mm512_maskz_loadu_ps(m, b + u);
        const uint64_t pos = (1ull << (2 * left)) - 1; /* left < 16 */
        _mm512_mask_storeu_ps(d + 2 * u, (__mmask16)pos, _mm512_permutex2var_ps(va, lo, vb));
        if (left > 8) _mm512_mask_storeu_ps(d + 2 * u + 16, (__mmask16)(pos >> 16), _mm512_permutex2var_ps(va, hi, vb));
    }
}

static void run(float *d, const float *a, const float *b, int64_t n) { run_inline(d, a, b, n, 1); }

static void rows(float *const *d, int64_t off, const float *a, int64_t lda, int64_t pairs, int64_t n, int stream) {
    for (int64_t r = 0; r < pairs; r++) run_inline(d[r] + off, a + 2 * r * lda, a + (2 * r + 1) * lda, n, stream);
}

/* The masks of output positions base .. base + 31 inside [lo, hi), and the interleave-add of the pairs in
 * va / vb to those positions of o (position base: lane 0). */
static inline void position_masks(int64_t base, int64_t lo, int64_t hi, __mmask16 *m0, __mmask16 *m1) {
    uint64_t m = 0xffffffffu;
    if (base < lo) m &= ~((1ull << (lo - base)) - 1);
    if (hi - base < 32) m &= (1ull << (hi - base)) - 1;
    *m0 = (__mmask16)m, *m1 = (__mmask16)(m >> 16);
}

static inline void add_pairs(float *o, __mmask16 m0, __mmask16 m1, __m512 va, __m512 vb) {
    const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_mask_storeu_ps(o, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), _mm512_permutex2var_ps(va, lo_idx, vb)));
    if (m1)
        _mm512_mask_storeu_ps(o + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16),
                                                        _mm512_permutex2var_ps(va, hi_idx, vb)));
}

static void add(float *d, const float *a, const float *b, int64_t lo, int64_t hi) {
    /* 16 pairs (positions base .. base + 31) per step from the pair of lo; the positions outside [lo, hi)
     * masked (neither read nor written), so the edges need no scalar adds */
    for (int64_t u = lo >> 1; 2 * u < hi; u += 16) {
        const int64_t base = 2 * u;
        __mmask16 m0, m1;
        position_masks(base, lo, hi, &m0, &m1);
        const int64_t pairs = (hi - base + 1) / 2; /* pairs read: from the first (it holds lo) to hi's */
        const uint32_t pm = pairs >= 16 ? 0xffffu : (1u << pairs) - 1;
        const __m512 va = _mm512_maskz_loadu_ps((__mmask16)pm, a + u), vb = _mm512_maskz_loadu_ps((__mmask16)pm, b + u);
        add_pairs(d + (base - lo), m0, m1, va, vb);
    }
}

/* The two row pairs summed in registers: the shifted pair's loads start one value back, lane 0 masked off at
 * the row's start (a masked load neither reads nor faults there), so nothing goes through memory first. */
static void add2(float *d, const float *a0, const float *b0, const float *a1, const float *b1, int64_t n, int64_t lo,
                 int64_t hi) {
    for (int64_t u = lo >> 1; 2 * u < hi; u += 16) {
        const int64_t base = 2 * u;
        __mmask16 m0, m1;
        position_masks(base, lo, hi, &m0, &m1);
        /* lanes j: pair u + j; the first rows hold pairs < n, the shifted ones pairs 1 .. n */
        const int64_t first = FP_MIN(16, FP_MAX(0, n - u)), second = FP_MIN(16, FP_MAX(0, n + 1 - u));
        const __mmask16 pf = (__mmask16)((1u << first) - 1);
        const __mmask16 ps = (__mmask16)(((1u << second) - 1) & (u == 0 ? 0xfffeu : 0xffffu));
        const __m512 va = _mm512_add_ps(_mm512_maskz_loadu_ps(pf, a0 + u), _mm512_maskz_loadu_ps(ps, a1 + u - 1));
        __m512 vb = _mm512_maskz_loadu_ps(pf, b0 + u);
        if (b1) vb = _mm512_add_ps(vb, _mm512_maskz_loadu_ps(ps, b1 + u - 1));
        add_pairs(d + (base - lo), m0, m1, va, vb);
    }
}

const fp_interleave_kernel fp_f32_interleave_2x16__avx512 = {
    FP_INTERLEAVE_ROW("f32_interleave_2x16__avx512", FP_ISA_AVX512, 16), run, add, add2, rows};

FP_TARGET_END
#endif
