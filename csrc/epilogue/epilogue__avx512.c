/* The epilogue tile kernels compiled for AVX-512 (the loops of epilogue_impl.h, 16 floats a vector). */
#include "../isa_target.h"
#include "epilogue.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#define EP_ISA avx512
#include "epilogue_types.h"

#include <immintrin.h>

/* Full vectors stream where they are aligned (a row's others, and the tail, store normally). */
void fp_ep_copy_avx512(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream) {
    for (int64_t i = 0; i < rows; i++) {
        const float *s = src + i * lds;
        float *d = dst + i * ld;
        int64_t j = 0;
        for (; j + 16 <= cols; j += 16) {
            const __m512 v = _mm512_loadu_ps(s + j);
            if (stream && ((uintptr_t)(d + j) & 63) == 0) _mm512_stream_ps(d + j, v);
            else _mm512_storeu_ps(d + j, v);
        }
        for (; j < cols; j++) d[j] = s[j];
    }
}
FP_TARGET_END
#endif
