/* The epilogue tile kernels compiled for AVX2+FMA (the loops of epilogue_impl.h, 8 floats a vector). */
#include "../isa_target.h"
#include "epilogue.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#define EP_ISA avx2
#include "epilogue_types.h"

#include <immintrin.h>

/* Full vectors stream where they are aligned (a row's others, and the tail, store normally). */
void fp_ep_copy_avx2(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream) {
    for (int64_t i = 0; i < rows; i++) {
        const float *s = src + i * lds;
        float *d = dst + i * ld;
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            const __m256 v = _mm256_loadu_ps(s + j);
            if (stream && ((uintptr_t)(d + j) & 31) == 0) _mm256_stream_ps(d + j, v);
            else _mm256_storeu_ps(d + j, v);
        }
        for (; j < cols; j++) d[j] = s[j];
    }
}
FP_TARGET_END
#endif
