/* convpx micro-kernel for AVX2+FMA: 4 output channels x up to 3 vectors of 8 output pixels (12 of the
 * 16 ymm registers accumulate; per step 3 input loads and 4 weight broadcasts for 12 FMAs). */
#include "../isa_target.h"
#include "direct_px.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#define VT __m256
#define VL 8
#define MC 4
#define PV 3
#define VZERO _mm256_setzero_ps
#define VLOAD _mm256_loadu_ps
/* lane i is loaded (stored) when i < n; maskload reads nothing for the other lanes */
#define VMASKN(n) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADM(p, n) _mm256_maskload_ps((p), VMASKN(n))
#define VSTORE _mm256_storeu_ps
#define VSTOREM(p, n, v) _mm256_maskstore_ps((p), VMASKN(n), (v))
#define VSEL(m, f, t) _mm256_blendv_ps((f), (t), (m))
#define VCMPLT(x, y) _mm256_cmp_ps((x), (y), _CMP_LT_OQ)
#define VCMPLE(x, y) _mm256_cmp_ps((x), (y), _CMP_LE_OQ)
#define VCMPGT(x, y) _mm256_cmp_ps((x), (y), _CMP_GT_OQ)
#define VCMPGE(x, y) _mm256_cmp_ps((x), (y), _CMP_GE_OQ)
#define VMUL _mm256_mul_ps
#define VADD _mm256_add_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VMAX _mm256_max_ps
#include "direct_px_impl.h"

PX_ROW(p256, f32_convpx_4x24__avx2, FP_ISA_AVX2)
FP_TARGET_END
#endif
