/* Compile the rest of a kernel file for one x86 ISA (never -march=native: the ISA to run is chosen at
 * run time).  gcc takes a target pragma; clang ignores that one and needs an attribute applied to
 * every function, popped at the end of the file.
 *
 *     #include "isa_target.h"
 *     FP_TARGET_AVX512      (or FP_TARGET_AVX2)
 *     #include <immintrin.h>
 *     ... kernels ...
 *     FP_TARGET_END */
#ifndef FP_ISA_TARGET_H
#define FP_ISA_TARGET_H

#if defined(__clang__)
#define FP_TARGET_AVX512                                                                                               \
    _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512vl,avx512bw,avx512dq,avx2,fma\"))), apply_to = function)")
#define FP_TARGET_AVX2 _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define FP_TARGET_END _Pragma("clang attribute pop")
#else
#define FP_TARGET_AVX512 _Pragma("GCC target(\"avx512f,avx512vl,avx512bw,avx512dq,avx2,fma\")")
#define FP_TARGET_AVX2 _Pragma("GCC target(\"avx2,fma\")")
#define FP_TARGET_END
#endif

#endif
