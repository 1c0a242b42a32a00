/* The AVX-512 part of the stride-2 activation packing (csrc/gemm/gemm_pack_act.c): dst[t] = src[2 t] for
 * t < n, 16 outputs from two loads and one vpermt2ps, where a gather costs a load per element (the fused
 * gathering first row tile of a stride-2 1x1 layer ran at ~70 % of the unit-stride speed on Zen 5).  Whole
 * vectors only while their 32 loads stay at or before src[2 n - 2]; the rest element by element. */
#include "internal.h"
#include "isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include <immintrin.h>

void fp_decimate2_avx512(const float *src, int64_t n, float *dst) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t t = 0;
    /* whole vectors while src[2 t + 31] is still inside the run (t + 17 <= n), the rest element by element */
    for (; t + 17 <= n; t += 16)
        _mm512_storeu_ps(dst + t, _mm512_permutex2var_ps(_mm512_loadu_ps(src + 2 * t), even,
                                                         _mm512_loadu_ps(src + 2 * t + 16)));
    for (; t < n; t++) dst[t] = src[2 * t];
}
FP_TARGET_END
#endif
