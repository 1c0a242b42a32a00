/* Shared internals of the C kernels: packed-weight header, the algorithm table, small helpers. */
#ifndef FASTPOINT_INTERNAL_H
#define FASTPOINT_INTERNAL_H
#include "fastpoint.h"

#define FP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define FP_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define FP_ALIGN 64

/* Packed weights start with this header so a run can refuse weights packed for another
 * algorithm, kernel, ISA or dtype (e.g. after fp_set_isa or fp_force_kernels in a test). */
#define FP_PACKED_MAGIC 0x46504b31u /* "FPK1" */
typedef struct fp_packed_header {
    uint32_t magic;
    int32_t algo;   /* index in the algorithm table */
    int32_t isa;
    int32_t f64;
    int64_t bytes;  /* payload bytes after the header */
    int32_t kernel; /* row of the kernel tables (fp_kernel_at), -1 for an algorithm without one */
    int32_t reserved32;
    int64_t reserved[4];
} fp_packed_header;
#define FP_HEADER_BYTES ((int64_t)sizeof(fp_packed_header))

/* One convolution algorithm.  `applies` and `packed_bytes` / `pack` read only the weight-related
 * fields of the problem (the input size is unknown when Conv2d packs); `run` sees everything.
 * `family` names its kernel table (csrc/kernel_table.c; NULL: none): the algorithm runs that
 * table's choice, and a forced kernel of the family makes it win wherever it applies. */
typedef struct fp_algo {
    const char *name;
    int (*applies)(const fp_conv_problem *p, int isa, int f64);
    const char *(*kernel_name)(const fp_conv_problem *p, int isa, int f64);
    int64_t (*packed_bytes)(const fp_conv_problem *p, int isa, int f64);
    int (*pack)(const fp_conv_problem *p, int isa, int f64, const void *w, void *dst);
    int (*run)(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed,
               const void *bias, void *y);
    const char *family;
    /* Optional, for one-shot calls: run on the caller's (Cout, Cin/groups, KH, KW) weights, packing them
     * inside the loops; FP_DECLINED when that does not pay for this problem (then they are packed first). */
    int (*run_unpacked)(const fp_conv_problem *p, int isa, int f64, const void *x, const void *w,
                        const void *bias, void *y);
} fp_algo;
#define FP_DECLINED 1
/* run_unpacked also answers, when the packing inside its loops saw every weight: */
#define FP_RAN_FINITE 2    /* ran; every weight is finite */
#define FP_RAN_NONFINITE 3 /* ran; some weight is NaN or +-Inf */
/* csrc/oneshot.c: 1 when some of the n floats at w is NaN or +-Inf */
int fp_any_nonfinite_f32(const float *w, int64_t n);

/* conv.c: the chosen algorithm's run_unpacked (thread count clamped, subnormals flushed, as for a run), or
 * FP_DECLINED. */
int fp_run_unpacked(const fp_conv_problem *p, int f64, const void *x, const void *w, const void *bias, void *y);

/* Algorithms, most specialised first; conv.c keeps the table. */
extern const fp_algo fp_algo_winograd; /* only when the problem asks for it (csrc/winograd) */
extern const fp_algo fp_algo_gemm1x1;
extern const fp_algo fp_algo_dwconv;
extern const fp_algo fp_algo_direct;
extern const fp_algo fp_algo_generic;

/* Taps [*lo, *hi) of a k-tap window with dilation dil, starting at input index `start` (negative in
 * the padding), that land inside [0, n); *hi <= *lo when none does. */
static inline void fp_tap_range(int64_t start, int64_t k, int64_t dil, int64_t n, int64_t *lo, int64_t *hi) {
    *lo = start >= 0 ? 0 : FP_CEIL_DIV(-start, dil);
    *hi = (n - 1 - start) < 0 ? 0 : FP_MIN(k, (n - 1 - start) / dil + 1);
}

/* This OS thread's scratch buffer number `slot` (0..3), at least `bytes` long, kept across calls
 * (csrc/scratch.c); NULL on failure.  The buffer stays valid until the same thread asks for the
 * same slot again. */
void *fp_scratch(int slot, int64_t bytes);
/* Slot of the packed weights of a one-shot call (csrc/oneshot.c), on the calling thread: kernels use
 * slots below it, so it stays valid while the call's kernel runs. */
#define FP_SCRATCH_ONCE 3

/* fp_scratch for a pool chunk: on failure, raise the call's shared `failed` flag (read after
 * fp_pool_run returns, to answer FP_ERR_ALLOC) and give NULL, so the chunk just returns. */
static inline void *fp_scratch_or_fail(int slot, int64_t bytes, int *failed) {
    void *buf = fp_scratch(slot, bytes);
    if (!buf) __atomic_store_n(failed, 1, __ATOMIC_RELAXED);
    return buf;
}

/* Packing helpers (csrc/pack.c).  fp_pack_transpose: dst[j * width + i] = src[i * ld + j] for i < rows,
 * j < cols, and zero for rows <= i < width (a panel's lanes past the last output channel).
 * fp_pack_jobs: fn(ctx, job) for job in [0, jobs), split across up to p->num_threads threads when the
 * packing writes `bytes` or more (jobs must write disjoint memory). */
void fp_pack_transpose(const float *src, int64_t ld, int64_t rows, int64_t cols, int64_t width, float *dst);
/* fp_pack_transpose, answering 1 when some value it read is NaN or +-Inf (one-shot calls: the caller's
 * weights checked as they are packed, csrc/oneshot.c). */
int fp_pack_transpose_check(const float *src, int64_t ld, int64_t rows, int64_t cols, int64_t width, float *dst);
typedef void (*fp_pack_fn)(void *ctx, int64_t job);
void fp_pack_jobs(const fp_conv_problem *p, int64_t jobs, int64_t bytes, fp_pack_fn fn, void *ctx);

/* Memory aligned to FP_ALIGN bytes; NULL on failure. */
void *fp_aligned_alloc(int64_t bytes);
void fp_aligned_free(void *ptr);

/* Flush-to-zero + denormals-are-zero around kernel code (csrc/fpenv.c); conv.c wraps every run in
 * fp_flush_enter/leave on the calling thread, and the pool's helper threads flush for good when they
 * start, so kernels that thread through fp_pool_run need not call these themselves. */
void fp_flush_enter(void);
void fp_flush_leave(void);

/* The one thread pool (csrc/pool.c).  Runs fn(ctx, chunk, worker) for chunk in [0, nchunks) on up to
 * FP_POOL_THREADS of `threads` threads: the caller is worker 0, helpers are 1 .. threads-1 (each id used
 * by one thread at a time; kernels take their scratch from fp_scratch, and keep no per-worker arrays).
 * The chunks are dealt in one contiguous range per worker; each worker claims from its own range's
 * atomic counter first, then from the others', so a helper that gets no core takes no chunk; a caller
 * that finds the pool busy (another thread's call) runs its chunks alone as worker 0. */
#define FP_POOL_THREADS 256 /* threads per call, caller included */
typedef void (*fp_task_fn)(void *ctx, int64_t chunk, int worker);
void fp_pool_run(int threads, int64_t nchunks, fp_task_fn fn, void *ctx);

/* Chunks for `jobs` independent jobs on `threads` threads: several per thread, so that dynamic
 * claiming evens out uneven jobs and a slow helper; fp_chunk_range gives chunk c's jobs [lo, hi). */
#define FP_CHUNKS_PER_THREAD 4
int64_t fp_chunk_count(int64_t jobs, int threads);
void fp_chunk_range(int64_t jobs, int64_t nchunks, int64_t chunk, int64_t *lo, int64_t *hi);

/* Last-level cache bytes for one thread's re-read blocks (csrc/cpu.c). */
int64_t fp_cache_share(void);

static inline int fp_threads(const fp_conv_problem *p) { return p->num_threads > 0 ? p->num_threads : 1; }

#endif
