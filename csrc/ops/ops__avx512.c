/* The op loops (ops_impl.h) vectorised for AVX-512 (FMA contraction off in ops_impl.h: products round as NumPy's). */
#include "ops.h"
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX512
#include <immintrin.h>
#define OPS_STREAM_FLOATS 16 /* one 64-byte line a non-temporal store (ops_impl.h's lerp_store) */
#include "ops_impl.h"

FP_OPS_TABLE(fp_ops_avx512, "avx512")
FP_TARGET_END
#endif
