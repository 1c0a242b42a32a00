/* AVX-512 interleave (interleave.h): 16 pairs per step, two two-source permutes; non-temporal stores
 * when d is 64-byte aligned (the caller fences before returning, fp_gemm_fence); the interleave-add the
 * same permutes added to d. */
#include <stdint.h>

#include "interleave.h"
#include "../isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include <immintrin.h>
FP_TARGET_AVX512

static void run(float *d, const float *a, const float *b, int64_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const int stream = ((uintptr_t)d & 63) == 0;
    int64_t u = 0;
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
    for (; u < n; u++) {
        d[2 * u] = a[u];
        d[2 * u + 1] = b[u];
    }
}

static void add(float *d, const float *a, const float *b, int64_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    int64_t u = 0;
    for (; u + 16 <= n; u += 16) {
        const __m512 va = _mm512_loadu_ps(a + u), vb = _mm512_loadu_ps(b + u);
        float *o = d + 2 * u;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), _mm512_permutex2var_ps(va, lo, vb)));
        _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_loadu_ps(o + 16), _mm512_permutex2var_ps(va, hi, vb)));
    }
    for (; u < n; u++) {
        d[2 * u] += a[u];
        d[2 * u + 1] += b[u];
    }
}

const fp_interleave_kernel fp_f32_interleave_2x16__avx512 = {
    FP_INTERLEAVE_ROW("f32_interleave_2x16__avx512", FP_ISA_AVX512, 16), run, add};

FP_TARGET_END
#endif
