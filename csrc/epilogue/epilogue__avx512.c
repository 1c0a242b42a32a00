/* The epilogue tile kernels compiled for AVX-512 (the loops of epilogue_impl.h, 16 floats a vector). */
#include "../isa_target.h"
#include "epilogue.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#define EP_ISA avx512
#include "epilogue_types.h"
FP_TARGET_END
#endif
