/* Enable an instruction set for the functions between FP_TARGET_BEGIN(set) and FP_TARGET_END, with
 * GCC and clang alike: clang ignores `#pragma GCC target`, GCC has no `#pragma clang attribute`.  The
 * rest of the file keeps the baseline ISA, so the library runs anywhere and picks at run time. */
#ifndef FP_ISA_TARGET_H
#define FP_ISA_TARGET_H

#define FP_TARGET_AVX512 "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"
#define FP_TARGET_AVX2 "avx2,fma"

#define FP_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define FP_TARGET_BEGIN(set) FP_PRAGMA(clang attribute push(__attribute__((target(set))), apply_to = function))
#define FP_TARGET_END FP_PRAGMA(clang attribute pop)
#else
#define FP_TARGET_BEGIN(set) FP_PRAGMA(GCC push_options) FP_PRAGMA(GCC target(set))
#define FP_TARGET_END FP_PRAGMA(GCC pop_options)
#endif

#endif
