/* Register-tile body shared by the SIMD micro-kernels (AVX-512: zmm, AVX2+FMA: ymm).
 *
 * Included by an ISA file after its target pragma, with VT (vector type), VPB (vectors per
 * 16-channel block), VL (lanes) and the V* operations defined.  The tile keeps rw x nb*VPB
 * accumulators in registers for the whole reduction over (cin, taps): per (channel, tap) it loads
 * nb*VPB weight vectors and broadcasts rw input floats (consecutive, so the addresses are one base
 * plus constant displacements). */
#include <immintrin.h>

static inline __attribute__((always_inline)) void dtile_body(const fp_dtile *a, const int RW, const int NB) {
    VT acc[14][4];
    const VT zero = VZERO();
#pragma GCC unroll 4
    for (int v = 0; v < VPB * NB; v++)
#pragma GCC unroll 14
        for (int j = 0; j < RW; j++) acc[j][v] = VLOAD(a->init + j * a->init_ps + VL * v);
    const float *px = a->pix;
    const int64_t *toff = a->toff;
    const int64_t t0 = a->t0, t1 = a->t1, T = a->ntaps, cs = a->cs, wblk = a->wblk;
    const float *w = a->w;
    for (int64_t ci = 0; ci < a->cin; ci++) {
        const float *wc = w + ci * T * FP_DIRECT_CB;
        for (int64_t t = t0; t < t1; t++) {
            const float *xp = px + toff[t];
            const float *wt = wc + t * FP_DIRECT_CB;
            VT wv[4];
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++)
#pragma GCC unroll 2
                for (int u = 0; u < VPB; u++) wv[VPB * b + u] = VLOAD(wt + b * wblk + VL * u);
#pragma GCC unroll 14
            for (int j = 0; j < RW; j++) {
                const VT xb = VBCAST(xp + j);
#pragma GCC unroll 4
                for (int v = 0; v < VPB * NB; v++) acc[j][v] = VFMA(xb, wv[v], acc[j][v]);
            }
        }
        px += cs;
    }
    float *out = a->out;
    const int64_t ops = a->ops;
    if (a->relu) {
#pragma GCC unroll 14
        for (int j = 0; j < RW; j++)
#pragma GCC unroll 4
            for (int v = 0; v < VPB * NB; v++) VSTORE(out + j * ops + VL * v, VMAX(zero, acc[j][v]));
    } else {
#pragma GCC unroll 14
        for (int j = 0; j < RW; j++)
#pragma GCC unroll 4
            for (int v = 0; v < VPB * NB; v++) VSTORE(out + j * ops + VL * v, acc[j][v]);
    }
}

#define DTILE_DEFINE(PFX, RW, NB) \
    static void PFX##_##RW##x##NB(const fp_dtile *a) { dtile_body(a, RW, NB); }
