/* AVX2 interleave (interleave.h): 8 pairs per step, unpacklo/hi within 128-bit lanes, then a lane permute;
 * the same with an add for the interleave-add. */
#include "interleave.h"
#include "../isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include <immintrin.h>
FP_TARGET_AVX2

static inline __attribute__((always_inline)) void run_inline(float *d, const float *a, const float *b, int64_t n) {
    int64_t u = 0;
    for (; u + 8 <= n; u += 8) {
        const __m256 va = _mm256_loadu_ps(a + u), vb = _mm256_loadu_ps(b + u);
        const __m256 l = _mm256_unpacklo_ps(va, vb), h = _mm256_unpackhi_ps(va, vb);
        _mm256_storeu_ps(d + 2 * u, _mm256_permute2f128_ps(l, h, 0x20));
        _mm256_storeu_ps(d + 2 * u + 8, _mm256_permute2f128_ps(l, h, 0x31));
    }
    for (; u < n; u++) {
        d[2 * u] = a[u];
        d[2 * u + 1] = b[u];
    }
}

static void run(float *d, const float *a, const float *b, int64_t n) { run_inline(d, a, b, n); }

static void rows(float *const *d, int64_t off, const float *a, int64_t lda, int64_t pairs, int64_t n, int stream) {
    (void)stream; /* ordinary stores */
    for (int64_t r = 0; r < pairs; r++) run_inline(d[r] + off, a + 2 * r * lda, a + (2 * r + 1) * lda, n);
}

static void add_pairs(float *d, const float *a, const float *b, int64_t n) {
    int64_t u = 0;
    for (; u + 8 <= n; u += 8) {
        const __m256 va = _mm256_loadu_ps(a + u), vb = _mm256_loadu_ps(b + u);
        const __m256 l = _mm256_unpacklo_ps(va, vb), h = _mm256_unpackhi_ps(va, vb);
        float *o = d + 2 * u;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), _mm256_permute2f128_ps(l, h, 0x20)));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), _mm256_permute2f128_ps(l, h, 0x31)));
    }
    for (; u < n; u++) {
        d[2 * u] += a[u];
        d[2 * u + 1] += b[u];
    }
}

static void add(float *d, const float *a, const float *b, int64_t lo, int64_t hi) {
    int64_t q = lo;
    if (q < hi && (q & 1)) d[0] += b[q >> 1], q++; /* an odd first position: the b row's output only */
    const int64_t pairs = (hi - q) / 2;
    add_pairs(d + (q - lo), a + (q >> 1), b + (q >> 1), pairs);
    q += 2 * pairs;
    if (q < hi) d[q - lo] += a[q >> 1]; /* an odd count: the a row's last output */
}

const fp_interleave_kernel fp_f32_interleave_2x8__avx2 = {FP_INTERLEAVE_ROW("f32_interleave_2x8__avx2", FP_ISA_AVX2, 8), run,
                                                          add, NULL, rows};

FP_TARGET_END
#endif
