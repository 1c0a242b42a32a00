/* Input and output transforms of F(4x4, 3x3) and F(2x2, 3x3) on one tile, vectorised along channels with
 * GCC/clang vector extensions of WN_VW floats; the including file sets the target ISA, WN_VW and WN_FN(name).
 * The last c % WN_VW channels go through the same code on lanes copied into zeroed vectors, so no
 * load or store touches memory past channel c.
 *
 * 1-D transforms (rows of B^T and A^T for the points 0, 1, -1, 2, -2, infinity):
 *   B^T d:  v0 = 4 d0 - 5 d2 + d4          A^T m:  o0 = m0 + (m1 + m2) + (m3 + m4)
 *           v1 = -4 (d1 + d2) + d3 + d4            o1 = (m1 - m2) + 2 (m3 - m4)
 *           v2 = 4 (d1 - d2) + d4 - d3             o2 = (m1 + m2) + 4 (m3 + m4)
 *           v3 = 2 (d3 - d1) + d4 - d2             o3 = (m1 - m2) + 8 (m3 - m4) + m5
 *           v4 = 2 (d1 - d3) + d4 - d2
 *           v5 = 4 d1 - 5 d3 + d5
 * and for F(2x2, 3x3) (points 0, 1, -1, infinity):
 *   B^T d:  v0 = d2 - d0,  v1 = d1 + d2,  v2 = d2 - d1,  v3 = d3 - d1     A^T m:  o0 = m0 + m1 + m2
 *                                                                                 o1 = m1 - m2 + m3
 * Each 2-D transform applies the 1-D one to the columns of the tile, then to the rows of the result. */
#include <string.h>

typedef float WN_FN(vec) __attribute__((vector_size(WN_VW * 4)));
typedef int WN_FN(ivec) __attribute__((vector_size(WN_VW * 4)));
#define WV WN_FN(vec)
#define WI WN_FN(ivec)

static inline __attribute__((always_inline)) WV WN_FN(ld)(const float *p) {
    WV v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline __attribute__((always_inline)) void WN_FN(st)(float *p, WV v) { memcpy(p, &v, sizeof v); }
static inline __attribute__((always_inline)) WV WN_FN(splat)(float f) {
    WV v = {0};
    return v + f;
}

static inline __attribute__((always_inline)) void WN_FN(bt6)(const WV d[6], WV v[6]) {
    const WV four = WN_FN(splat)(4.0f), five = WN_FN(splat)(5.0f), two = WN_FN(splat)(2.0f);
    v[0] = four * d[0] - five * d[2] + d[4];
    v[1] = d[3] + d[4] - four * (d[1] + d[2]);
    v[2] = four * (d[1] - d[2]) + (d[4] - d[3]);
    v[3] = two * (d[3] - d[1]) + (d[4] - d[2]);
    v[4] = two * (d[1] - d[3]) + (d[4] - d[2]);
    v[5] = four * d[1] - five * d[3] + d[5];
}

static inline __attribute__((always_inline)) void WN_FN(at6)(const WV m[6], WV o[4]) {
    const WV s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + WN_FN(splat)(2.0f) * d34;
    o[2] = s12 + WN_FN(splat)(4.0f) * s34;
    o[3] = d12 + WN_FN(splat)(8.0f) * d34 + m[5];
}

static inline __attribute__((always_inline)) void WN_FN(bt4)(const WV d[4], WV v[4]) {
    v[0] = d[2] - d[0];
    v[1] = d[1] + d[2];
    v[2] = d[2] - d[1];
    v[3] = d[3] - d[1];
}

static inline __attribute__((always_inline)) void WN_FN(at4)(const WV m[4], WV o[2]) {
    o[0] = m[0] + m[1] + m[2];
    o[1] = m[1] - m[2] + m[3];
}

/* The 2-D transforms of F(4x4, 3x3), below, and of F(2x2, 3x3), here. */
static inline __attribute__((always_inline)) void WN_FN(in_vec2)(const WV d[16], WV v[16]) {
    WV t[16];
    for (int j = 0; j < 4; j++) {
        WV col[4], r[4];
        for (int i = 0; i < 4; i++) col[i] = d[4 * i + j];
        WN_FN(bt4)(col, r);
        for (int k = 0; k < 4; k++) t[4 * k + j] = r[k];
    }
    for (int k = 0; k < 4; k++) WN_FN(bt4)(&t[4 * k], &v[4 * k]);
}

static inline __attribute__((always_inline)) void WN_FN(out_vec2)(const WV m[16], WV y[4]) {
    WV t[8];
    for (int l = 0; l < 4; l++) {
        WV col[4], r[2];
        for (int k = 0; k < 4; k++) col[k] = m[4 * k + l];
        WN_FN(at4)(col, r);
        for (int a = 0; a < 2; a++) t[4 * a + l] = r[a];
    }
    for (int a = 0; a < 2; a++) WN_FN(at4)(&t[4 * a], &y[2 * a]);
}

/* V = B^T d B for one vector of channels: d[6 i + j] -> v[6 k + l]. */
static inline __attribute__((always_inline)) void WN_FN(in_vec4)(const WV d[36], WV v[36]) {
    WV t[36];
    for (int j = 0; j < 6; j++) {
        WV col[6], r[6];
        for (int i = 0; i < 6; i++) col[i] = d[6 * i + j];
        WN_FN(bt6)(col, r);
        for (int k = 0; k < 6; k++) t[6 * k + j] = r[k];
    }
    for (int k = 0; k < 6; k++) WN_FN(bt6)(&t[6 * k], &v[6 * k]);
}

/* Y = A^T M A for one vector of channels: m[6 k + l] -> y[4 a + b]. */
static inline __attribute__((always_inline)) void WN_FN(out_vec4)(const WV m[36], WV y[16]) {
    WV t[24]; /* t[6 a + l] = sum_k A^T[a][k] m[k][l] */
    for (int l = 0; l < 6; l++) {
        WV col[6], r[4];
        for (int k = 0; k < 6; k++) col[k] = m[6 * k + l];
        WN_FN(at6)(col, r);
        for (int a = 0; a < 4; a++) t[6 * a + l] = r[a];
    }
    for (int a = 0; a < 4; a++) WN_FN(at6)(&t[6 * a], &y[4 * a]);
}

static inline __attribute__((always_inline)) WV WN_FN(relu)(WV y) {
    const WI neg = y < WN_FN(splat)(0.0f); /* false for NaN: NaN stays NaN, as max(0, y) in PyTorch */
    return (WV)((WI)y & ~neg);
}

/* One tile's transform of NN = 36 (F(4x4)) or 16 (F(2x2)) positions; MM = 16 or 4 output pixels. */
static inline __attribute__((always_inline)) void WN_FN(input_t)(const float *const *src, const float *const *next,
                                                                int64_t c, float *dst, int64_t ldk, const int NN) {
    WV d[36], v[36];
    int64_t c0 = 0;
    for (; c0 + WN_VW <= c; c0 += WN_VW) {
        if (next && c0 % 16 == 0)
            for (int q = 0; q < NN; q++) __builtin_prefetch(next[q] + c0, 0, 3);
        for (int q = 0; q < NN; q++) d[q] = WN_FN(ld)(src[q] + c0);
        if (NN == 36) WN_FN(in_vec4)(d, v);
        else WN_FN(in_vec2)(d, v);
        for (int k = 0; k < NN; k++) WN_FN(st)(dst + k * ldk + c0, v[k]);
    }
    if (c0 < c) {
        const size_t bytes = sizeof(float) * (size_t)(c - c0);
        for (int q = 0; q < NN; q++) {
            d[q] = WN_FN(splat)(0.0f);
            memcpy(&d[q], src[q] + c0, bytes);
        }
        if (NN == 36) WN_FN(in_vec4)(d, v);
        else WN_FN(in_vec2)(d, v);
        for (int k = 0; k < NN; k++) memcpy(dst + k * ldk + c0, &v[k], bytes);
    }
}

static inline __attribute__((always_inline)) void WN_FN(output_t)(const float *m, const float *next, int64_t ldk,
                                                                 int64_t c, const float *bias, int relu,
                                                                 float *const *dst, const int NN, const int MM) {
    WV mv[36], y[16];
    for (int64_t c0 = 0; c0 < c; c0 += WN_VW) {
        if (next && c0 % 16 == 0)
            for (int k = 0; k < NN; k++) __builtin_prefetch(next + k * ldk + c0, 0, 3);
        const int whole = c0 + WN_VW <= c;
        const size_t bytes = sizeof(float) * (size_t)(whole ? WN_VW : c - c0);
        WV b = WN_FN(splat)(0.0f);
        if (whole) {
            for (int k = 0; k < NN; k++) mv[k] = WN_FN(ld)(m + k * ldk + c0);
            if (bias) b = WN_FN(ld)(bias + c0);
        } else {
            for (int k = 0; k < NN; k++) {
                mv[k] = WN_FN(splat)(0.0f);
                memcpy(&mv[k], m + k * ldk + c0, bytes);
            }
            if (bias) memcpy(&b, bias + c0, bytes);
        }
        if (NN == 36) WN_FN(out_vec4)(mv, y);
        else WN_FN(out_vec2)(mv, y);
        for (int q = 0; q < MM; q++) {
            if (!dst[q]) continue;
            WV r = y[q] + b;
            if (relu) r = WN_FN(relu)(r);
            if (whole) WN_FN(st)(dst[q] + c0, r);
            else memcpy(dst[q] + c0, &r, bytes);
        }
    }
}

static void WN_FN(input4)(const float *const *src, const float *const *next, int64_t c, float *dst, int64_t ldk) {
    WN_FN(input_t)(src, next, c, dst, ldk, 36);
}
static void WN_FN(input2)(const float *const *src, const float *const *next, int64_t c, float *dst, int64_t ldk) {
    WN_FN(input_t)(src, next, c, dst, ldk, 16);
}
static void WN_FN(output4)(const float *m, const float *next, int64_t ldk, int64_t c, const float *bias, int relu,
                           float *const *dst) {
    WN_FN(output_t)(m, next, ldk, c, bias, relu, dst, 36, 16);
}
static void WN_FN(output2)(const float *m, const float *next, int64_t ldk, int64_t c, const float *bias, int relu,
                           float *const *dst) {
    WN_FN(output_t)(m, next, ldk, c, bias, relu, dst, 16, 4);
}

/* NCHW layout changes around the transforms (the transforms run along channels):
 *   stage: the window [iy0, iy1) x [ix0, ix1) of one image (C planes of H x W) into s, channel-last
 *          (pixel (iy, ix) at s + ((iy - iy0) * (ix1 - ix0) + ix - ix0) * ldv; ldv >= C rounded up to 16,
 *          the lanes past C may be written);
 *   store: output rows a < rows, columns x < cols (<= 16: up to 16 / m tiles of m x m side by side) of
 *          channels [0, c) from o (pixel (a, x) of channel ch at o[(m m (x / m) + m a + x % m) * ldm + ch]) into y (channel
 *          planes `plane` floats apart, rows OW apart); with `stream`, whole 64-byte aligned rows of 16
 *          go past the caches (non-temporal; the caller fences). */
#if WN_VW == 16
#include <immintrin.h>

#include "../transpose16_avx512.h"

/* 16 channels x 16 pixels per step, turned by one in-register 16 x 16 transpose. */
static void WN_FN(stage)(const float *xn, int64_t C, int64_t H, int64_t W, int64_t iy0, int64_t iy1, int64_t ix0,
                         int64_t ix1, int64_t ldv, float *s) {
    const int64_t cols = ix1 - ix0, HW = H * W;
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
        const int64_t cn = FP_MIN(16, C - c0);
        for (int64_t iy = iy0; iy < iy1; iy++) {
            const float *row = xn + c0 * HW + iy * W;
            float *d = s + (iy - iy0) * cols * ldv + c0;
            for (int64_t ix = ix0; ix < ix1; ix += 16) {
                const int64_t n = FP_MIN(16, ix1 - ix);
                const __mmask16 m = (__mmask16)((1u << n) - 1u);
                __m512 r[16];
                for (int64_t i = 0; i < 16; i++)
                    r[i] = i < cn ? _mm512_maskz_loadu_ps(m, row + i * HW + ix) : _mm512_setzero_ps();
                fp_tr16_ps(r);
                for (int64_t q = 0; q < n; q++) _mm512_storeu_ps(d + (ix - ix0 + q) * ldv, r[q]);
            }
        }
    }
}

static void WN_FN(store)(const float *o, int64_t ldm, int64_t c, int64_t plane, int64_t OW, int64_t rows,
                         int64_t cols, int64_t m, int stream, float *y) {
    const __mmask16 mcols = (__mmask16)((1u << cols) - 1u);
    for (int64_t a = 0; a < rows; a++)
        for (int64_t c0 = 0; c0 < c; c0 += 16) {
            const int64_t cn = FP_MIN(16, c - c0);
            const __mmask16 mc = (__mmask16)((1u << cn) - 1u);
            __m512 r[16];
            for (int64_t x = 0; x < 16; x++)
                r[x] = x < cols ? _mm512_maskz_loadu_ps(mc, o + (m * m * (x / m) + m * a + x % m) * ldm + c0)
                                : _mm512_setzero_ps();
            fp_tr16_ps(r);
            for (int64_t i = 0; i < cn; i++) {
                float *d = y + (c0 + i) * plane + a * OW;
                if (stream && cols == 16 && ((uintptr_t)d & 63) == 0) _mm512_stream_ps(d, r[i]);
                else _mm512_mask_storeu_ps(d, mcols, r[i]);
            }
        }
}
#else
/* Plain loops, 16 channels at a time so that each pixel's line of s is written whole. */
static void WN_FN(stage)(const float *xn, int64_t C, int64_t H, int64_t W, int64_t iy0, int64_t iy1, int64_t ix0,
                         int64_t ix1, int64_t ldv, float *s) {
    const int64_t cols = ix1 - ix0, HW = H * W;
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
        const int64_t cn = FP_MIN(16, C - c0);
        for (int64_t iy = iy0; iy < iy1; iy++) {
            const float *row = xn + c0 * HW + iy * W;
            float *d = s + (iy - iy0) * cols * ldv + c0;
            for (int64_t ix = ix0; ix < ix1; ix++, d += ldv)
                for (int64_t i = 0; i < cn; i++) d[i] = row[i * HW + ix];
        }
    }
}

static void WN_FN(store)(const float *o, int64_t ldm, int64_t c, int64_t plane, int64_t OW, int64_t rows,
                         int64_t cols, int64_t m, int stream, float *y) {
    (void)stream;
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t a = 0; a < rows; a++) {
            float *yr = y + ch * plane + a * OW;
            for (int64_t x = 0; x < cols; x++) yr[x] = o[(m * m * (x / m) + m * a + x % m) * ldm + ch];
        }
}
#endif

#undef WV
#undef WI
