/* The op loops (ops_impl.h) vectorised for AVX2 (FMA contraction off in ops_impl.h: products round as NumPy's). */
#include "ops.h"
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX2
#include <immintrin.h>
/* the vectors of ops_impl.h's lerp_store: non-temporal stores of 32-byte lines */
#define OPS_STREAM_FLOATS 8
#define OPS_V __m256
#define OPS_SET1 _mm256_set1_ps
#define OPS_LOADU _mm256_loadu_ps
#define OPS_MUL _mm256_mul_ps
#define OPS_ADD _mm256_add_ps
#define OPS_STREAM _mm256_stream_ps
#include "ops_impl.h"

FP_OPS_TABLE(fp_ops_avx2, "avx2")
FP_TARGET_END
#endif
