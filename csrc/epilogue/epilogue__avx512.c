/* The epilogue kernels for AVX-512: the tile loops of epilogue_impl.h (16 floats a vector), the streamed copy. */
#include "../isa_target.h"
#include "epilogue.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#define EP_ISA avx512
#include "epilogue_types.h"

#include <immintrin.h>

#define EP_V __m512
#define EP_W 16
#define EP_VBYTES 64
#define EP_LOAD _mm512_loadu_ps
#define EP_STREAM _mm512_stream_ps
#define EP_STORE _mm512_storeu_ps
#include "epilogue_copy_impl.h"
FP_TARGET_END
#endif
