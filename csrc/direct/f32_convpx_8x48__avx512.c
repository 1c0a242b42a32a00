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

PXTILE_DEFINE(p512, 1, 0) PXTILE_DEFINE(p512, 2, 0) PXTILE_DEFINE(p512, 3, 0)
PXTILE_DEFINE(p512, 1, 1) PXTILE_DEFINE(p512, 2, 1) PXTILE_DEFINE(p512, 3, 1)

static fp_pxkernel kernel_avx512(int nv, int masked) {
    static const fp_pxkernel k[2][3] = {{p512_1_0, p512_2_0, p512_3_0}, {p512_1_1, p512_2_1, p512_3_1}};
    return k[masked != 0][nv - 1];
}
const fp_px_ukr fp_f32_convpx_8x48__avx512 = {{"f32_convpx_8x48__avx512", "convpx", 0, FP_ISA_AVX512, 8, 48},
                                              MC, VL, PV, kernel_avx512};
FP_TARGET_END
#endif
