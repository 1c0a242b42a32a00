/* The op loops (ops_impl.h) vectorised for AVX-512 (FMA contraction off in ops_impl.h: products round as NumPy's). */
#include "ops.h"
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX512
#include <immintrin.h>
/* the vectors of ops_impl.h's lerp_store: non-temporal stores of 64-byte lines */
#define OPS_STREAM_FLOATS 16
#define OPS_V __m512
#define OPS_SET1 _mm512_set1_ps
#define OPS_LOADU _mm512_loadu_ps
#define OPS_MUL _mm512_mul_ps
#define OPS_ADD _mm512_add_ps
#define OPS_STREAM _mm512_stream_ps
#include "ops_impl.h"

FP_OPS_TABLE(fp_ops_avx512, "avx512")
FP_TARGET_END
#endif
