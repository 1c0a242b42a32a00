/* Fused epilogues: y = act(conv(x, w) + bias + residual), applied by each algorithm where it stores a
 * tile of y, while that tile is still in L1 (docs/epilogues.md).
 *
 * The public per-call description is fp_epilogue (fastpoint.h); conv.c resolves it into an fp_ep for
 * the call's dtype and ISA and makes it this thread's current epilogue around the algorithm's run.  An
 * algorithm reads fp_ep_current() once on the calling thread (in its run, before fp_pool_run), carries
 * it in its task, and after storing a finished tile (last k block only) calls fp_ep_tile on it.  The
 * kernels themselves then store conv + bias: conv.c clears the problem's relu flag while an epilogue
 * runs (the epilogue applies the ReLU). */
#ifndef FP_EPILOGUE_H
#define FP_EPILOGUE_H
#include "../internal.h"

typedef struct fp_ep fp_ep;

/* A finished tile: rows x cols elements, row i at y + i * ld elements, element (i, j)'s output channel
 * ch0 + i * ch_row + j * ch_col (ch_col 0 or 1); y = act(y + res) in place, res (NULL: none) row i at
 * res + i * ldr elements. */
typedef void (*fp_ep_tile_fn)(const fp_ep *ep, void *y, int64_t ld, const void *res, int64_t ldr, int64_t rows,
                              int64_t cols, int64_t ch0, int64_t ch_row, int64_t ch_col);
/* float32 rows x cols from src (lds apart) to dst (ld apart); stream: non-temporal stores for the 64-byte
 * aligned vectors (the caller fences, as for the kernels' own streamed stores). */
typedef void (*fp_ep_copy_fn)(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols,
                              int stream);

struct fp_ep {
    int kind;            /* FP_ACT_* */
    int has_res;
    float a32, b32;      /* alpha, beta in float32 */
    double a64, b64;
    const void *slope;   /* PReLU: one slope per output channel */
    intptr_t res_bytes;  /* residual address minus output address */
    fp_ep_tile_fn tile;  /* the ISA's tile kernel for the call's dtype */
    fp_ep_copy_fn copy;  /* the ISA's float32 tile copy */
};

/* The epilogue of the call this thread is running (NULL: none). */
const fp_ep *fp_ep_current(void);

/* conv.c: resolve `e` for a call writing y (dtype f64, ISA isa) into *ep.  Returns 1 when an epilogue
 * runs; 0 when there is nothing to apply besides the problem's own ReLU (*relu tells which). */
int fp_ep_resolve(const fp_epilogue *e, int f64, int isa, const void *y, int *relu, fp_ep *ep);
/* Make ep this thread's current epilogue (NULL clears); returns the previous one. */
const fp_ep *fp_ep_enter(const fp_ep *ep);

/* Apply ep to a finished tile of y (see fp_ep_tile_fn; its residual is at the same place in the
 * residual's array): one call per tile, the loops in the ISA's kernel. */
static inline void fp_ep_tile(const fp_ep *ep, void *y, int64_t rows, int64_t cols, int64_t ld, int64_t ch0,
                              int64_t ch_row, int64_t ch_col) {
    if (rows > 0 && cols > 0)
        ep->tile(ep, y, ld, ep->has_res ? (const char *)y + ep->res_bytes : NULL, ld, rows, cols, ch0, ch_row, ch_col);
}

/* Fetch the residual of a float32 tile about to be computed at dst (rows x cols, ld apart) into the cache,
 * so that the epilogue's reads of it (a strided tile, which the hardware prefetchers follow poorly) overlap
 * the tile's arithmetic. */
static inline void fp_ep_prefetch32(const fp_ep *ep, const float *dst, int64_t ld, int64_t rows, int64_t cols) {
    if (!ep->has_res) return;
    const char *r = (const char *)dst + ep->res_bytes;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j += 16) __builtin_prefetch(r + (i * ld + j) * (int64_t)sizeof(float), 0, 3);
}

/* Floats of the largest buffered tile (fp_ep_tile_out): 16 x 64, a GEMM micro-tile's bound. */
#define FP_EP_TILE_FLOATS 1024

/* A float32 tile computed into a buffer (buf, ldb apart) whose place in y is dst (ld apart): the epilogue
 * in the buffer, then one store into y, streamed when `stream` (an output past the caches keeps its
 * non-temporal stores: no read for ownership of y's lines, as without an epilogue). */
static inline void fp_ep_tile_out(const fp_ep *ep, float *buf, int64_t ldb, float *dst, int64_t ld, int64_t rows,
                                  int64_t cols, int64_t ch0, int64_t ch_row, int64_t ch_col, int stream) {
    if (rows <= 0 || cols <= 0) return;
    ep->tile(ep, buf, ldb, ep->has_res ? (const char *)dst + ep->res_bytes : NULL, ld, rows, cols, ch0, ch_row, ch_col);
    ep->copy(buf, ldb, dst, ld, rows, cols, stream);
}

/* The kernels of each ISA (epilogue__<isa>.c): tiles [0] float32, [1] float64; the float32 copy. */
extern const fp_ep_tile_fn fp_ep_tiles_scalar[2];
extern const fp_ep_tile_fn fp_ep_tiles_avx2[2];
extern const fp_ep_tile_fn fp_ep_tiles_avx512[2];
void fp_ep_copy_scalar(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream);
void fp_ep_copy_avx2(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream);
void fp_ep_copy_avx512(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream);

#endif
