/* The epilogue kernels for AVX2+FMA: the tile loops of epilogue_impl.h (8 floats a vector), the streamed copy. */
#include "../isa_target.h"
#include "epilogue.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#define EP_ISA avx2
#include "epilogue_types.h"

#include <immintrin.h>

#define EP_V __m256
#define EP_W 8
#define EP_VBYTES 32
#define EP_LOAD _mm256_loadu_ps
#define EP_STREAM _mm256_stream_ps
#define EP_STORE _mm256_storeu_ps
#include "epilogue_copy_impl.h"
FP_TARGET_END
#endif
