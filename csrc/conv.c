/* Entry points: pick an algorithm from the table, pack weights behind a header, run.  Each
 * algorithm then runs its family's choice from the kernel tables (csrc/kernel_table.c). */
#include <string.h>

#include "epilogue/epilogue.h"
#include "internal.h"
#include "kernel_table.h"

/* Most specialised first; the generic algorithm applies to every problem and closes the list. */
static const fp_algo *const ALGOS[] = {
    &fp_algo_winograd,
    &fp_algo_gemm1x1,
    &fp_algo_dwconv,
    &fp_algo_direct_px, /* few input channels (the stems); before direct, which serves them too */
    &fp_algo_direct,
    &fp_algo_generic,
};
#define N_ALGOS ((int)(sizeof(ALGOS) / sizeof(ALGOS[0])))

static int choose(const fp_conv_problem *p, int isa, int f64) {
    /* a forced kernel (tests, benchmarks) takes its algorithm wherever that applies */
    if (fp_kernel_forcing())
        for (int i = 0; i < N_ALGOS; i++)
            if (ALGOS[i]->family && fp_kernel_forced(ALGOS[i]->family, f64) && ALGOS[i]->applies(p, isa, f64))
                return i;
    for (int i = 0; i < N_ALGOS; i++)
        if (ALGOS[i]->applies(p, isa, f64)) return i;
    return N_ALGOS - 1;
}

/* The kernel-table row algorithm `algo` runs (NULL: the algorithm has no table). */
static const fp_kernel *kernel_row(int algo, int isa, int f64) {
    const char *family = ALGOS[algo]->family;
    return family ? fp_kernel_pick(family, f64, isa) : NULL;
}

const char *fp_kernel_name(const fp_conv_problem *p, int f64) {
    int isa = fp_isa();
    const fp_algo *a = ALGOS[choose(p, isa, f64)];
    return a->kernel_name ? a->kernel_name(p, isa, f64) : a->name;
}

int64_t fp_packed_bytes(const fp_conv_problem *p, int f64) {
    int isa = fp_isa();
    return FP_HEADER_BYTES + ALGOS[choose(p, isa, f64)]->packed_bytes(p, isa, f64);
}

static int pack(const fp_conv_problem *p, int f64, const void *w, void *packed) {
    int isa = fp_isa();
    int algo = choose(p, isa, f64);
    fp_packed_header *h = (fp_packed_header *)packed;
    memset(h, 0, sizeof *h);
    h->magic = FP_PACKED_MAGIC;
    h->algo = algo;
    h->isa = isa;
    h->f64 = f64;
    h->kernel = fp_kernel_index(kernel_row(algo, isa, f64));
    h->bytes = ALGOS[algo]->packed_bytes(p, isa, f64);
    return ALGOS[algo]->pack(p, isa, f64, w, (char *)packed + FP_HEADER_BYTES);
}

/* More threads than processors never helps (and 100000 once crashed the OpenMP runtime the kernels used),
 * so the caller's count is clamped for every algorithm. */
static fp_conv_problem clamped(const fp_conv_problem *p) {
    fp_conv_problem q = *p;
    const int cap = fp_max_threads();
    q.num_threads = q.num_threads < 1 ? 1 : q.num_threads > cap ? cap : q.num_threads;
    return q;
}

static int run(const fp_conv_problem *p, int f64, const void *x, const void *packed, const void *bias, void *y,
               const fp_epilogue *e) {
    const fp_packed_header *h = (const fp_packed_header *)packed;
    if (h->magic != FP_PACKED_MAGIC || h->f64 != f64 || h->algo < 0 || h->algo >= N_ALGOS ||
        h->isa != fp_isa() || h->algo != choose(p, h->isa, f64) || fp_kernel_at(h->kernel) != kernel_row(h->algo, h->isa, f64))
        return FP_ERR_PACKED;
    fp_conv_problem q = clamped(p);
    /* an epilogue beyond the kernels' own ReLU: the kernels store conv + bias, the algorithm applies it
     * to each finished tile (csrc/epilogue/) */
    fp_ep ep;
    int relu = q.relu;
    const int has_ep = e && fp_ep_resolve(e, f64, h->isa, y, &relu, &ep);
    q.relu = relu;
    const fp_ep *prev = has_ep ? fp_ep_enter(&ep) : NULL;
    /* subnormals would cost a microcode assist per operation: flush them on this thread (csrc/fpenv.c;
     * the pool's helpers flush for good when they start) */
    fp_flush_enter();
    int rc = ALGOS[h->algo]->run(&q, h->isa, f64, x, (const char *)packed + FP_HEADER_BYTES, bias, y);
    fp_flush_leave();
    if (has_ep) fp_ep_enter(prev);
    return rc;
}

int fp_run_unpacked(const fp_conv_problem *p, int f64, const void *x, const void *w, const void *bias, void *y) {
    const int isa = fp_isa(), algo = choose(p, isa, f64);
    if (!ALGOS[algo]->run_unpacked) return FP_DECLINED;
    const fp_conv_problem q = clamped(p);
    fp_flush_enter();
    int rc = ALGOS[algo]->run_unpacked(&q, isa, f64, x, w, bias, y);
    fp_flush_leave();
    return rc;
}

int fp_pack_f32(const fp_conv_problem *p, const float *w, void *packed) { return pack(p, 0, w, packed); }
int fp_pack_f64(const fp_conv_problem *p, const double *w, void *packed) { return pack(p, 1, w, packed); }

int fp_conv_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    return run(p, 0, x, packed, bias, y, NULL);
}
int fp_conv_f64(const fp_conv_problem *p, const double *x, const void *packed, const double *bias, double *y) {
    return run(p, 1, x, packed, bias, y, NULL);
}
int fp_conv_ep_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y,
                   const fp_epilogue *ep) {
    return run(p, 0, x, packed, bias, y, ep);
}
int fp_conv_ep_f64(const fp_conv_problem *p, const double *x, const void *packed, const double *bias, double *y,
                   const fp_epilogue *ep) {
    return run(p, 1, x, packed, bias, y, ep);
}
