/* The op loops (ops_impl.h) vectorised for AVX2 (FMA contraction off in ops_impl.h: products round as NumPy's). */
#include "ops.h"
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX2
#include <immintrin.h>
#define OPS_STREAM_FLOATS 8 /* 32 bytes a non-temporal store (ops_impl.h's lerp_store) */
#include "ops_impl.h"

FP_OPS_TABLE(fp_ops_avx2, "avx2")
FP_TARGET_END
#endif
