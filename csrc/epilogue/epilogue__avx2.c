/* The epilogue tile kernels compiled for AVX2+FMA (the loops of epilogue_impl.h, 8 floats a vector). */
#include "../isa_target.h"
#include "epilogue.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#define EP_ISA avx2
#include "epilogue_types.h"
FP_TARGET_END
#endif
