/* The op loops (ops_impl.h) vectorised for AVX2 (FMA contraction off in ops_impl.h: products round as NumPy's). */
#include "ops.h"
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX2
#include "ops_impl.h"

FP_OPS_TABLE(fp_ops_avx2, "avx2")
FP_TARGET_END
#endif
