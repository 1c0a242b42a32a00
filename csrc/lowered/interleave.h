/* The `interleave` family of the kernel table (csrc/kernel_table.c): d[2u] = a[u], d[2u + 1] = b[u] for
 * u < n, the store of a 2x2 stride-2 transposed convolution's kx = 0 and kx = 1 rows into one output
 * row (deconv_gemm.c).  The portable row is what the compiler makes of the loop (scalar moves at the
 * baseline ISA: a quarter of a U-Net up-convolution at 128 channels); the AVX-512 and AVX2 rows
 * interleave 16 / 8 pairs per step with two permutes, the AVX-512 one with non-temporal stores when d
 * is 64-byte aligned (the output is written once; the driver fences). */
#ifndef FP_INTERLEAVE_H
#define FP_INTERLEAVE_H
#include "../internal.h"
#include "../kernel_table.h"

typedef struct fp_interleave_kernel {
    fp_kernel k;
    void (*run)(float *d, const float *a, const float *b, int64_t n);
    /* The interleave-add of the general transposed conv's stride-2 store (deconv_scatter.c) on the positions
     * [lo, hi) of the pair sequence only (the rest are cropped by the padding or past the row):
     * d[q - lo] += (q even ? a : b)[q / 2] for lo <= q < hi.  Whole, the edges included, so that no scalar
     * add reads back what a vector store just wrote (a failed store-to-load forward). */
    void (*add)(float *d, const float *a, const float *b, int64_t lo, int64_t hi);
    /* The same for two row pairs of n values, the second shifted by one pair (K >= 2*stride, deconv_scatter.c):
     * pair u < n + 1 is (a0[u] + a1[u - 1], b0[u] + b1[u - 1]), terms past their rows zero, b1 NULL: zero (K = 3);
     * positions [lo, hi) of the 2(n + 1).  NULL: the driver sums the rows in a buffer and calls add. */
    void (*add2)(float *d, const float *a0, const float *b0, const float *a1, const float *b1, int64_t n, int64_t lo,
                 int64_t hi);
    /* run for `pairs` row pairs of one tile at once: pair r (rows a + 2r*lda, a + (2r+1)*lda) into d[r] + off,
     * n pairs each: one call per run of a tile instead of one per run and row pair (the call, its constants and
     * its vzeroupper were a third of the 2x2 store's samples at Cin = 32).  stream: non-temporal stores allowed
     * (where the row has them).  NULL: the driver calls run. */
    void (*rows)(float *const *d, int64_t off, const float *a, int64_t lda, int64_t pairs, int64_t n, int stream);
} fp_interleave_kernel;

#define FP_INTERLEAVE_ROW(NAME, ISA, N) {NAME, "interleave", 0, ISA, 2, N}

extern const fp_interleave_kernel fp_f32_interleave_2x1__scalar;
extern const fp_interleave_kernel fp_f32_interleave_2x8__avx2;
extern const fp_interleave_kernel fp_f32_interleave_2x16__avx512;

/* The row to run at ISA level isa (the table's choice). */
static inline const fp_interleave_kernel *fp_interleave_pick(int isa) {
    return (const fp_interleave_kernel *)fp_kernel_pick("interleave", 0, isa);
}

#endif
