/* convpx micro-kernel for AVX-512: 8 output channels x up to 3 vectors of 16 output pixels (24 zmm
 * accumulators; per step 3 input loads and 8 weight broadcasts for 24 FMAs). */
#include "../isa_target.h"
#include "direct_px.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#define VT __m512
#define VL 16
#define MC 8
#define PV 3
#define VZERO _mm512_setzero_ps
#define VLOAD _mm512_loadu_ps
#define VLOADM(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), (p))
#define VSTORE _mm512_storeu_ps
#define VSTOREM(p, n, v) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define VSEL(m, f, t) _mm512_mask_mov_ps((f), (m), (t))
#define VCMPLT(x, y) _mm512_cmp_ps_mask((x), (y), _CMP_LT_OQ)
#define VCMPLE(x, y) _mm512_cmp_ps_mask((x), (y), _CMP_LE_OQ)
#define VCMPGT(x, y) _mm512_cmp_ps_mask((x), (y), _CMP_GT_OQ)
#define VCMPGE(x, y) _mm512_cmp_ps_mask((x), (y), _CMP_GE_OQ)
#define VMUL _mm512_mul_ps
#define VADD _mm512_add_ps
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VMAX _mm512_max_ps
#include "direct_px_impl.h"

PX_ROW(p512, f32_convpx_8x48__avx512, FP_ISA_AVX512)
FP_TARGET_END
#endif
