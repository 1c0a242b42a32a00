/* Register-tile body of the convpx SIMD micro-kernels (AVX-512: zmm, AVX2+FMA: ymm).
 *
 * Included by an ISA file after its target pragma, with VT (vector type), VL (lanes), MC (channels of
 * the tile), PV (pixel vectors of the widest tile) and the V* operations defined; VLOADM(p, n) loads
 * the first n lanes and zeroes the rest without touching memory past them.  The tile keeps MC x nv
 * accumulators for the whole reduction over (cin, taps): per (channel, tap) nv input vectors (one
 * base plus constant displacements) and MC weight broadcasts feed MC x nv FMAs.  VSTOREM(p, n, v)
 * stores the first n lanes; VSEL(m, f, t) takes t where the comparison mask m holds, else f. */
#include <immintrin.h>

static inline __attribute__((always_inline)) void pxtile_body(const fp_pxtile *a, const int NV, const int MASKED) {
    VT acc[MC][PV];
    const float *bias = a->bias;
#pragma GCC unroll 8
    for (int c = 0; c < MC; c++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[c][v] = VSET1(bias[c]);
    const float *px = a->pix;
    const int64_t *toff = a->toff;
    const int64_t t0 = a->t0, t1 = a->t1, T = a->ntaps, cs = a->cs, ws = a->wstep;
    const int64_t rem = a->npx - (NV - 1) * VL; /* lanes of the last vector */
    for (int64_t ci = 0; ci < a->cin; ci++) {
        const float *wc = a->w + ci * T * ws;
        for (int64_t t = t0; t < t1; t++) {
            const float *xp = px + toff[t];
            const float *wt = wc + t * ws;
            VT xv[PV];
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++)
                xv[v] = (MASKED && v == NV - 1) ? VLOADM(xp + v * VL, rem) : VLOAD(xp + v * VL);
#pragma GCC unroll 8
            for (int c = 0; c < MC; c++) {
                const VT wb = VSET1(wt[c]);
#pragma GCC unroll 3
                for (int v = 0; v < NV; v++) acc[c][v] = VFMA(xv[v], wb, acc[c][v]);
            }
        }
        px += cs;
    }
    float *out = a->out;
    const int64_t ocs = a->ocs;
    /* The activation in registers, each kind as csrc/epilogue/epilogue_impl.h writes it (the same
     * operations in the same order, NaN kept), so results equal the epilogue pass they replace. */
    const VT zero = VZERO(), va = VSET1(a->alpha), vb = VSET1(a->beta);
    const VT three = VSET1(3.0f), mthree = VSET1(-3.0f), sixth = VSET1((float)(1.0 / 6.0));
#define PX_STORE(EXPR)                                                                          \
    _Pragma("GCC unroll 8") for (int c = 0; c < MC; c++)                                       \
        _Pragma("GCC unroll 3") for (int v = 0; v < NV; v++) {                                 \
            const VT x = acc[c][v];                                                            \
            const VT r = EXPR;                                                                 \
            if (MASKED && v == NV - 1) VSTOREM(out + c * ocs + v * VL, rem, r);                \
            else VSTORE(out + c * ocs + v * VL, r);                                            \
        }
    switch (a->act) {
    case FP_ACT_RELU: PX_STORE(VMAX(zero, x)) break;
    case FP_ACT_CLIP: PX_STORE(VSEL(VCMPLT(VSEL(VCMPGT(x, vb), x, vb), va), VSEL(VCMPGT(x, vb), x, vb), va)) break;
    case FP_ACT_LEAKY: PX_STORE(VSEL(VCMPLT(x, zero), x, VMUL(va, x))) break;
    case FP_ACT_HARDSWISH:
        PX_STORE(VSEL(VCMPLE(x, mthree), VSEL(VCMPGE(x, three), VMUL(VMUL(x, VADD(x, three)), sixth), x), zero))
        break;
    default: PX_STORE(x) break;
    }
#undef PX_STORE
    (void)va; (void)vb; (void)three; (void)mthree; (void)sixth;
}

/* The six instances (1..3 vectors, last one masked or not), their look-up and the table row `NAME`. */
#define PXTILE_DEFINE(PFX, NV, M) \
    static void PFX##_##NV##_##M(const fp_pxtile *a) { pxtile_body(a, NV, M); }
#define PX_ROW(PFX, NAME, ISA)                                                                                  \
    PXTILE_DEFINE(PFX, 1, 0) PXTILE_DEFINE(PFX, 2, 0) PXTILE_DEFINE(PFX, 3, 0)                                  \
    PXTILE_DEFINE(PFX, 1, 1) PXTILE_DEFINE(PFX, 2, 1) PXTILE_DEFINE(PFX, 3, 1)                                  \
    static fp_pxkernel PFX##_kernel(int nv, int masked) {                                                      \
        static const fp_pxkernel k[2][3] = {{PFX##_1_0, PFX##_2_0, PFX##_3_0}, {PFX##_1_1, PFX##_2_1, PFX##_3_1}}; \
        return k[masked != 0][nv - 1];                                                                          \
    }                                                                                                           \
    const fp_px_ukr fp_##NAME = {{#NAME, "convpx", 0, ISA, MC, PV * VL}, MC, VL, PV, PFX##_kernel};
