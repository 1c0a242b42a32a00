/* The AVX-512 form of the one-shot weight check (csrc/oneshot.c): whether some of n floats is NaN or +-Inf,
 * 16 at a time (the largest exponent field seen, per lane; the last partial vector under a mask, so nothing
 * past w is read).  The portable loop vectorizes to 4 lanes on baseline x86-64: on a one-shot depthwise
 * 960 @7 call (8640 weights, a 12 us kernel) it took 9 % of the call. */
#include "internal.h"
#include "isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include <immintrin.h>

int fp_any_nonfinite_f32_avx512(const float *w, int64_t n) {
    const __m512i expo = _mm512_set1_epi32(0x7f800000);
    __m512i acc = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_max_epu32(acc, _mm512_and_si512(_mm512_loadu_si512(w + i), expo));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        acc = _mm512_max_epu32(acc, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, w + i), expo));
    }
    return _mm512_cmpeq_epi32_mask(acc, expo) != 0;
}
FP_TARGET_END
#endif
