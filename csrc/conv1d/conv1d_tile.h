/* The body of the vector conv1d micro-kernels (conv1d.h), shared by the ISA files, which define before
 * including it:
 *   V                  the vector type; VW its floats
 *   V_SET1(f), V_LOAD(p), V_FMA(a, b, c) (a*b + c), V_MAX0(v) (max(0, v), NaN kept), V_STORE(p, v), V_BCAST(p)
 *   CONV1D_ROWS(M)     M(0) M(1) ... M(MR - 1): the tile's output channels
 * The tile is MR channels x 3 vectors of positions.  The accumulators are named variables, not an array: with
 * `__m512 c[8][3]` GCC kept the array on the stack across the reduction's entry and exit (about 50 spilled
 * 64-byte stores and reloads per tile), which on a short reduction (wav2vec2's stem: Cin 1 x K 10, 240 FMAs a
 * tile) cost more than the FMAs. */

static void run(const fp_conv1d_args *a) {
#define DECL(i) V c##i##0, c##i##1, c##i##2;
    CONV1D_ROWS(DECL)
#undef DECL
    const float *bias = a->bias;
#define INIT(i) c##i##0 = c##i##1 = c##i##2 = V_SET1(bias ? bias[i] : 0.0f);
    CONV1D_ROWS(INIT)
#undef INIT
    const float *w = a->w, *xc = a->x;
    const int64_t *toff = a->toff, taps = a->taps, ldx = a->ldx;
    for (int64_t ci = 0; ci < a->cin; ci++, xc += ldx)
        for (int64_t t = 0; t < taps; t++, w += CONV1D_MR) {
            const float *xt = xc + toff[t];
            const V x0 = V_LOAD(xt), x1 = V_LOAD(xt + VW), x2 = V_LOAD(xt + 2 * VW);
#define FMA(i)                                   \
    {                                            \
        const V wi = V_BCAST(w + i);             \
        c##i##0 = V_FMA(x0, wi, c##i##0);        \
        c##i##1 = V_FMA(x1, wi, c##i##1);        \
        c##i##2 = V_FMA(x2, wi, c##i##2);        \
    }
            CONV1D_ROWS(FMA)
#undef FMA
        }
    float *y = a->y;
    const int64_t ldy = a->ldy;
    if (a->relu) {
#define RELU(i) c##i##0 = V_MAX0(c##i##0), c##i##1 = V_MAX0(c##i##1), c##i##2 = V_MAX0(c##i##2);
        CONV1D_ROWS(RELU)
#undef RELU
    }
#define STORE(i)                                 \
    V_STORE(y + (i) * ldy, c##i##0);             \
    V_STORE(y + (i) * ldy + VW, c##i##1);        \
    V_STORE(y + (i) * ldy + 2 * VW, c##i##2);
    CONV1D_ROWS(STORE)
#undef STORE
}
