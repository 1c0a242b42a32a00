/* d[2u] = a[u], d[2u + 1] = b[u]: the store of a 2x2 stride-2 transposed conv's kx = 0 and kx = 1 rows into
 * one output row.  The compiler turns the portable loop into scalar moves (the file is built for the
 * baseline ISA), which cost a quarter of a U-Net up-convolution at 128 channels; the AVX-512 and AVX2
 * forms interleave 16 / 8 pairs per step with two permutes.  Function-level target attributes (not
 * pragmas) so that gcc and clang both honour them. */
#include <stdint.h>

#include "lowered.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include <immintrin.h>

__attribute__((target("avx512f"))) static int64_t interleave_avx512(float *d, const float *a, const float *b,
                                                                     int64_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    int64_t u = 0;
    if (((uintptr_t)d & 63) == 0) { /* past the caches (the output is written once): see fp_gemm_fence */
        for (; u + 16 <= n; u += 16) {
            const __m512 va = _mm512_loadu_ps(a + u), vb = _mm512_loadu_ps(b + u);
            _mm512_stream_ps(d + 2 * u, _mm512_permutex2var_ps(va, lo, vb));
            _mm512_stream_ps(d + 2 * u + 16, _mm512_permutex2var_ps(va, hi, vb));
        }
        return u;
    }
    for (; u + 16 <= n; u += 16) {
        const __m512 va = _mm512_loadu_ps(a + u), vb = _mm512_loadu_ps(b + u);
        _mm512_storeu_ps(d + 2 * u, _mm512_permutex2var_ps(va, lo, vb));
        _mm512_storeu_ps(d + 2 * u + 16, _mm512_permutex2var_ps(va, hi, vb));
    }
    return u;
}

__attribute__((target("avx2"))) static int64_t interleave_avx2(float *d, const float *a, const float *b, int64_t n) {
    int64_t u = 0;
    for (; u + 8 <= n; u += 8) {
        const __m256 va = _mm256_loadu_ps(a + u), vb = _mm256_loadu_ps(b + u);
        const __m256 l = _mm256_unpacklo_ps(va, vb), h = _mm256_unpackhi_ps(va, vb); /* per 128-bit lane */
        _mm256_storeu_ps(d + 2 * u, _mm256_permute2f128_ps(l, h, 0x20));
        _mm256_storeu_ps(d + 2 * u + 8, _mm256_permute2f128_ps(l, h, 0x31));
    }
    return u;
}
#endif

void fp_interleave2(int isa, float *d, const float *a, const float *b, int64_t n) {
    int64_t u = 0;
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (isa >= FP_ISA_AVX512) u = interleave_avx512(d, a, b, n);
    else if (isa >= FP_ISA_AVX2) u = interleave_avx2(d, a, b, n);
#else
    (void)isa;
#endif
    for (; u < n; u++) {
        d[2 * u] = a[u];
        d[2 * u + 1] = b[u];
    }
}
