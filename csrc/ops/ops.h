/* Network ops outside convolutions (csrc/ops/): pooling, resize, global average pooling and
 * elementwise chains on float32 NCHW or NHWC images, threaded on the one pool.  The loops live in
 * ops_impl.h, compiled once per ISA (ops__avx512.c, ops__avx2.c, ops__scalar.c) so the compiler
 * vectorises them for each instruction set; ops.c picks the one fp_isa() names at run time.
 * docs/ops.md describes the contracts; the arguments are checked in Python (fastpoint/ops/_c.py). */
#ifndef FP_OPS_H
#define FP_OPS_H
#include <stdint.h>

/* One ISA's loops: one job each (rows of an image, a chunk of elements); the drivers in ops.c split the
 * jobs over the pool. */
typedef struct fp_ops_isa {
    const char *name;
    void (*pool_row)(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                     const int64_t *geom, int kind, const float *div, int64_t c0, int64_t c1, int64_t n,
                     int64_t oy, float *acc);
    void (*resize_row)(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                       const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int64_t c0,
                       int64_t c1, int64_t n, int64_t oy, float *scratch);
    /* linear, x channels-last (NHWC) into y planes (NCHW): ops_impl.h */
    void (*resize_row_c2p)(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                           const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int64_t n,
                           int64_t oy, float *scratch, int stream);
    /* linear, x and y channels-last (NHWC), the two source rows blended along W kept in scratch (ops_impl.h) */
    void (*resize_row_nhwc)(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                            const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int64_t n,
                            int64_t oy, float *scratch);
    void (*eltwise)(const float *a, const float *b, float *y, int64_t mid, int64_t inner, int bmode, int op,
                    int act, float alpha, float beta, int64_t lo, int64_t hi);
    void (*transpose_tile)(const float *x, float *y, int64_t a, int64_t b, int64_t i0, int64_t i1, int64_t j0,
                           int64_t j1);
    void (*gap_nhwc)(const float *x, float *y, int64_t C, int64_t HW, int64_t c0, int64_t nc, double *acc);
} fp_ops_isa;

extern const fp_ops_isa fp_ops_avx512, fp_ops_avx2, fp_ops_scalar;

/* The stem convolution (fp_op_conv_stem_f32, stem__avx512.c): x NCHW, y NHWC, both contiguous. */
typedef struct fp_stem_geom {
    int64_t n, c, h, w, oh, ow, oc;
    int64_t kh, kw, sh, sw, dh, dw, pt, pl;
} fp_stem_geom;
struct fp_ep;
/* Output row oy of image n: wp holds the taps (c, ky, kx) in order, each 16 * ceil(oc / 16) floats (zero
 * past oc), bias as many; ep: the epilogue (NULL: conv + bias, ReLU'd when relu); buf: 8 * 32 floats. */
void fp_stem_row_avx512(const float *x, const fp_stem_geom *g, const float *wp, const float *bias, float *y,
                        const struct fp_ep *ep, int relu, int64_t n, int64_t oy, float *buf);

#endif
