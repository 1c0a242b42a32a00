/* Depthwise micro-kernels in plain C, instantiated by f32_dwconv_4x16c__scalar.c (portable) and
 * f32_dwconv_4x16c__avx2.c (the same loops compiled for AVX2+FMA).  DW_FN(name) names the functions,
 * DW_ISA and DW_NAME the table row.
 *
 * NCHW tiles ([row][W][16], see dwconv_driver.c): blocks of up to DW_PX adjacent output pixels x 16
 * channels, each tap's 16 weights loaded once for the DW_PX pixels, the compiler vectorizing along
 * the channels.  On a 7x7 or 14x14 plane this keeps the vectors full, where a row-vectorized loop
 * runs 7 or 14 lanes.  NHWC: one pixel at a time, all channels in the inner loops (long contiguous
 * loops that the compiler vectorizes; measured faster than the 16-channel blocks here), accumulators
 * in a row of cout floats. */

#define DW_PX 4

/* PX output pixels from input column col0, n (NC when known at compile time) of the 16 channels at
 * xr0, w, bias (input channel = output channel).  INNER: every tap inside the row (no column checks). */
static inline __attribute__((always_inline)) void DW_FN(vec)(const float *xr0, int64_t col0, const float *w,
                                                           const fp_dw_geo *g, int64_t nky, const float *bias,
                                                           float *yp, const int PX, const int INNER, const int NC,
                                                           int64_t nc) {
    const int64_t C = g->C, W = g->W, rs = g->dh * W * C, n = NC ? NC : nc;
    float acc[DW_PX][16];
    for (int q = 0; q < DW_PX; q++)
        for (int64_t c = 0; c < 16; c++) acc[q][c] = bias && c < n ? bias[c] : 0.0f;
    for (int64_t ky = 0; ky < nky; ky++) {
        const float *xr = xr0 + ky * rs;
        for (int64_t kx = 0; kx < g->kw; kx++) {
            const float *wt = w + (ky * g->kw + kx) * g->cpad;
            for (int q = 0; q < PX; q++) {
                const int64_t ix = col0 + q * g->sw + kx * g->dw;
                if (!INNER && (uint64_t)ix >= (uint64_t)W) continue;
                const float *xp = xr + ix * C;
                for (int64_t c = 0; c < n; c++) acc[q][c] += wt[c] * xp[c];
            }
        }
    }
    for (int q = 0; q < PX; q++)
        for (int64_t c = 0; c < n; c++) {
            const float v = acc[q][c];
            yp[q * C + c] = g->relu && v < 0 ? 0.0f : v;
        }
}

/* PX (<= DW_CALL) output pixels, channels [c0, c1) in blocks of 16 (the fp_dw_block_fn contract),
 * DW_PX pixels at a time: a call covers a row of up to DW_CALL pixels, so that the loop over the
 * 4-pixel blocks stays inside the kernel (an indirect call per 4 pixels cost 2-3x on 14x14 planes).
 * EDGE: some columns may lie outside the image; each DW_PX block is checked for it. */
#define DW_CALL 16
static inline __attribute__((always_inline)) void DW_FN(block)(const float *xrow, int64_t col0, const float *w,
                                                             const fp_dw_geo *g, int64_t nky, const float *bias,
                                                             int64_t c0, int64_t c1, float *yp, const int PX,
                                                             const int EDGE) {
    const int64_t span = (DW_PX - 1) * g->sw + (g->kw - 1) * g->dw;
    for (int o = 0; o < PX; o += DW_PX) {
        const int64_t x0 = col0 + o * g->sw;
        const int inner = PX - o >= DW_PX && (!EDGE || (x0 >= 0 && x0 + span < g->W));
        float *yo = yp + o * g->C;
        for (int64_t cb = c0; cb < c1; cb += 16) {
            const float *b = bias ? bias + cb : NULL;
            if (inner && c1 - cb >= 16)
                DW_FN(vec)(xrow + cb, x0, w + cb, g, nky, b, yo + cb, DW_PX, 1, 16, 16);
            else if (c1 - cb >= 16)
                DW_FN(vec)(xrow + cb, x0, w + cb, g, nky, b, yo + cb, PX - o >= DW_PX ? DW_PX : PX % DW_PX, 0, 16, 16);
            else
                DW_FN(vec)(xrow + cb, x0, w + cb, g, nky, b, yo + cb, PX - o >= DW_PX ? DW_PX : PX % DW_PX, 0, 0,
                           c1 - cb);
        }
    }
}

#define DW_BLOCK(PX, EDGE)                                                                                            \
    static void DW_FN(block_##PX##_##EDGE)(const float *xrow, int64_t col0, const float *w, const fp_dw_geo *g,      \
                                           int64_t nky, const float *bias, int64_t c0, int64_t c1, float *yp) {     \
        DW_FN(block)(xrow, col0, w, g, nky, bias, c0, c1, yp, PX, EDGE);                                              \
    }
#define DW_BLOCKS(EDGE)                                                                                               \
    DW_BLOCK(1, EDGE) DW_BLOCK(2, EDGE) DW_BLOCK(3, EDGE) DW_BLOCK(4, EDGE) DW_BLOCK(5, EDGE) DW_BLOCK(6, EDGE)       \
    DW_BLOCK(7, EDGE) DW_BLOCK(8, EDGE) DW_BLOCK(9, EDGE) DW_BLOCK(10, EDGE) DW_BLOCK(11, EDGE) DW_BLOCK(12, EDGE)   \
    DW_BLOCK(13, EDGE) DW_BLOCK(14, EDGE) DW_BLOCK(15, EDGE) DW_BLOCK(16, EDGE)
DW_BLOCKS(0)
DW_BLOCKS(1)
#undef DW_BLOCKS
#undef DW_BLOCK
#define DW_ROW(E)                                                                                                     \
    {DW_FN(block_1_##E), DW_FN(block_2_##E), DW_FN(block_3_##E), DW_FN(block_4_##E), DW_FN(block_5_##E),             \
     DW_FN(block_6_##E), DW_FN(block_7_##E), DW_FN(block_8_##E), DW_FN(block_9_##E), DW_FN(block_10_##E),           \
     DW_FN(block_11_##E), DW_FN(block_12_##E), DW_FN(block_13_##E), DW_FN(block_14_##E), DW_FN(block_15_##E),       \
     DW_FN(block_16_##E)}
static const fp_dw_block_fn DW_FN(block_fns)[2][DW_CALL] = {DW_ROW(0), DW_ROW(1)};
#undef DW_ROW

static const fp_dw_block_fn *DW_FN(blocks)(const fp_conv_problem *p) {
    (void)p;
    return &DW_FN(block_fns)[0][0];
}

static int64_t DW_FN(px)(int64_t ow) { return FP_MIN(DW_CALL, ow); }

/* NHWC pixels [ox0, ox1) of one output row, channels [c0, c1); output channel c reads input c / m. */
static void DW_FN(pixels)(const fp_conv_problem *p, const float *xn, const float *w, const float *bias, int64_t m,
                          int64_t iyb, int64_t ky0, int64_t ky1, int64_t ox0, int64_t ox1, int64_t c0, int64_t c1,
                          float *yrow, float *acc) {
    const int64_t C = p->cout, cpad = fp_dw_cpad(p);
    for (int64_t ox = ox0; ox < ox1; ox++) {
        for (int64_t c = c0; c < c1; c++) acc[c] = bias ? bias[c] : 0.0f;
        for (int64_t ky = ky0; ky < ky1; ky++) {
            const float *xr = xn + (iyb + ky * p->dil_h) * p->w * p->cin;
            for (int64_t kx = 0; kx < p->kw; kx++) {
                const int64_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                if ((uint64_t)ix >= (uint64_t)p->w) continue;
                const float *xp = xr + ix * p->cin;
                const float *wt = w + (ky * p->kw + kx) * cpad;
                if (m == 1)
                    for (int64_t c = c0; c < c1; c++) acc[c] += wt[c] * xp[c];
                else
                    for (int64_t c = c0; c < c1; c++) acc[c] += wt[c] * xp[c / m];
            }
        }
        float *yp = yrow + ox * C;
        for (int64_t c = c0; c < c1; c++) yp[c] = p->relu && acc[c] < 0 ? 0.0f : acc[c];
    }
}

static void DW_FN(tile_in)(const float *const *pl, int64_t nch, int64_t at, int64_t npix, float *dst) {
    for (int64_t l = 0; l < 16; l++) {
        const float *xp = l < nch ? pl[l] + at : NULL;
        for (int64_t i = 0; i < npix; i++) dst[i * 16 + l] = xp ? xp[i] : 0.0f;
    }
}

static void DW_FN(tile_out)(const float *src, int64_t npix, float *const *pl, int64_t nch, int64_t at) {
    for (int64_t l = 0; l < nch; l++) {
        float *yp = pl[l] + at;
        for (int64_t i = 0; i < npix; i++) yp[i] = src[i * 16 + l];
    }
}
