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

/* A finished tile of y: rows x cols elements, row i at y + i * ld elements, element (i, j)'s output channel
 * ch0 + i * ch_row + j * ch_col (ch_col 0 or 1); y = act(y + res) with res = y + res_bytes when the call
 * has a residual. */
typedef void (*fp_ep_tile_fn)(const fp_ep *ep, void *y, int64_t rows, int64_t cols, int64_t ld, int64_t ch0,
                              int64_t ch_row, int64_t ch_col);

struct fp_ep {
    int kind;            /* FP_ACT_* */
    int has_res;
    float a32, b32;      /* alpha, beta in float32 */
    double a64, b64;
    const void *slope;   /* PReLU: one slope per output channel */
    intptr_t res_bytes;  /* residual address minus output address */
    fp_ep_tile_fn tile;  /* the ISA's tile kernel for the call's dtype */
};

/* The epilogue of the call this thread is running (NULL: none). */
const fp_ep *fp_ep_current(void);

/* conv.c: resolve `e` for a call writing y (dtype f64, ISA isa) into *ep.  Returns 1 when an epilogue
 * runs; 0 when there is nothing to apply besides the problem's own ReLU (*relu tells which). */
int fp_ep_resolve(const fp_epilogue *e, int f64, int isa, const void *y, int *relu, fp_ep *ep);
/* Make ep this thread's current epilogue (NULL clears); returns the previous one. */
const fp_ep *fp_ep_enter(const fp_ep *ep);

/* Apply ep to a finished tile (see fp_ep_tile_fn): one call per tile, the loops in the ISA's kernel. */
static inline void fp_ep_tile(const fp_ep *ep, void *y, int64_t rows, int64_t cols, int64_t ld, int64_t ch0,
                              int64_t ch_row, int64_t ch_col) {
    if (rows > 0 && cols > 0) ep->tile(ep, y, rows, cols, ld, ch0, ch_row, ch_col);
}

/* The tile kernels of each ISA (epilogue__<isa>.c); [0] float32, [1] float64. */
extern const fp_ep_tile_fn fp_ep_tiles_scalar[2];
extern const fp_ep_tile_fn fp_ep_tiles_avx2[2];
extern const fp_ep_tile_fn fp_ep_tiles_avx512[2];

#endif
