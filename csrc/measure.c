/* Machine measurements for `fastpoint info` and the "% of peak" columns of `fastpoint bench`:
 * the float32 FMA peak (GFLOP/s) and the STREAM-triad bandwidth (GB/s), at a given thread count;
 * and the pool's wake-and-join, which the C backend's thread rule weighs a call's work against.
 *
 * The peak kernel runs independent FMA chains (12 accumulators: more than latency x FMA ports on
 * current x86 cores, so the chains never wait on each other) in the widest vector ISA that fp_isa()
 * allows; each ISA body enables its own instructions with a target attribute, so the file builds
 * without -march and runs on any CPU.  Results are the best of a few repetitions, because a shared
 * machine only ever makes a measurement slower. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>

#include "internal.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FP_MEASURE_X86 1
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define FP_CHAINS 12

/* Each function runs `iters` steps of FP_CHAINS independent chains acc = acc * m + a (fixed point
 * 1.0, so no overflow or denormals) and returns a sum so the compiler must keep the work.
 * Returns flops done per iteration through *flops_per_iter. */
#ifdef FP_MEASURE_X86
__attribute__((target("avx512f,avx2,fma")))
static float chains_avx512(int64_t iters, double *flops_per_iter) {
    __m512 acc[FP_CHAINS];
    const __m512 m = _mm512_set1_ps(0.9999f), a = _mm512_set1_ps(0.0001f);
    for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm512_set1_ps(1.0f + 0.001f * (float)j);
    for (int64_t i = 0; i < iters; i++) {
        for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, a);
    }
    __m512 s = acc[0];
    for (int j = 1; j < FP_CHAINS; j++) s = _mm512_add_ps(s, acc[j]);
    *flops_per_iter = 2.0 * 16 * FP_CHAINS;
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
static float chains_avx2(int64_t iters, double *flops_per_iter) {
    __m256 acc[FP_CHAINS];
    const __m256 m = _mm256_set1_ps(0.9999f), a = _mm256_set1_ps(0.0001f);
    for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm256_set1_ps(1.0f + 0.001f * (float)j);
    for (int64_t i = 0; i < iters; i++) {
        for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, a);
    }
    __m256 s = acc[0];
    for (int j = 1; j < FP_CHAINS; j++) s = _mm256_add_ps(s, acc[j]);
    float out[8];
    _mm256_storeu_ps(out, s);
    *flops_per_iter = 2.0 * 8 * FP_CHAINS;
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

/* Portable chains: the compiler may vectorise them for the baseline ISA (SSE2 on x86-64), which is
 * what the portable kernels get too. */
static float chains_portable(int64_t iters, double *flops_per_iter) {
    float acc[FP_CHAINS * 4];
    for (int j = 0; j < FP_CHAINS * 4; j++) acc[j] = 1.0f + 0.001f * (float)j;
    for (int64_t i = 0; i < iters; i++) {
        for (int j = 0; j < FP_CHAINS * 4; j++) acc[j] = acc[j] * 0.9999f + 0.0001f;
    }
    float s = 0;
    for (int j = 0; j < FP_CHAINS * 4; j++) s += acc[j];
    *flops_per_iter = 2.0 * 4 * FP_CHAINS;
    return s;
}

static float run_chains(int isa, int64_t iters, double *flops_per_iter) {
#ifdef FP_MEASURE_X86
    if (isa >= FP_ISA_AVX512) return chains_avx512(iters, flops_per_iter);
    if (isa >= FP_ISA_AVX2) return chains_avx2(iters, flops_per_iter);
#endif
    (void)isa;
    return chains_portable(iters, flops_per_iter);
}

volatile float fp_measure_sink; /* results land here so no chain is dead code */

/* A team of `threads` threads that all run at once (the caller is member 0), with a spinning barrier:
 * a peak measurement needs every thread busy at the same time, which a pool whose helpers may not
 * join (csrc/pool.c) does not promise, so the team is started with pthread_create for each
 * measurement. */
typedef struct team {
    int threads;
    int go;             /* members start once the count is final (atomic) */
    int arrived, sense; /* barrier state (atomic) */
    void (*body)(struct team *tm, int id, void *ctx);
    void *ctx;
} team;

static void team_barrier(team *tm, int *local_sense) {
    if (tm->threads <= 1) return;
    const int s = *local_sense = !*local_sense;
    if (__atomic_add_fetch(&tm->arrived, 1, __ATOMIC_ACQ_REL) == tm->threads) {
        __atomic_store_n(&tm->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&tm->sense, s, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&tm->sense, __ATOMIC_ACQUIRE) != s) sched_yield();
    }
}

#if (defined(__unix__) || defined(__APPLE__)) && !defined(FP_NO_PTHREADS)
#include <pthread.h>
#define FP_MEASURE_THREADS 1
typedef struct member {
    team *tm;
    int id;
} member;

static void *member_main(void *arg) {
    member *m = (member *)arg;
    while (!__atomic_load_n(&m->tm->go, __ATOMIC_ACQUIRE)) sched_yield();
    m->tm->body(m->tm, m->id, m->tm->ctx);
    return NULL;
}
#endif

/* Runs body on `threads` threads at once; fewer if threads cannot be started (the count actually used
 * is returned, and body sees it in tm->threads). */
static int team_run(int threads, void (*body)(team *, int, void *), void *ctx) {
    team tm = {1, 0, 0, 0, body, ctx};
#ifdef FP_MEASURE_THREADS
    if (threads > 1) {
        pthread_t *tid = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
        member *mem = (member *)calloc((size_t)threads, sizeof(member));
        if (tid && mem) {
            int started = 1;
            for (int i = 1; i < threads; i++) {
                mem[i].tm = &tm;
                mem[i].id = i;
                if (pthread_create(&tid[i], NULL, member_main, &mem[i]) != 0) break;
                started++;
            }
            tm.threads = started; /* fewer when a thread could not be started */
            __atomic_store_n(&tm.go, 1, __ATOMIC_RELEASE);
            body(&tm, 0, ctx);
            for (int i = 1; i < started; i++) pthread_join(tid[i], NULL);
            free(tid);
            free(mem);
            return started;
        }
        free(tid);
        free(mem);
    }
#endif
    (void)threads;
    body(&tm, 0, ctx);
    return 1;
}

typedef struct fma_ctx {
    double seconds, t0, t1;
    int isa;
    double flops[256];
} fma_ctx;

/* One timed pass: every thread runs chunks of chains until `seconds` have passed. */
static void fma_body(team *tm, int id, void *vctx) {
    fma_ctx *c = (fma_ctx *)vctx;
    const int64_t chunk = 20000;
    int sense = 0;
    double fpi = 0.0;
    float sink = run_chains(c->isa, 1000, &fpi); /* warm up: clocks and the wide units */
    team_barrier(tm, &sense);
    if (id == 0) c->t0 = now_s();
    team_barrier(tm, &sense);
    int64_t done = 0;
    double start = now_s();
    while (now_s() - start < c->seconds) {
        sink += run_chains(c->isa, chunk, &fpi);
        done += chunk;
    }
    fp_measure_sink = sink;
    c->flops[id] = fpi * (double)done;
    team_barrier(tm, &sense);
    if (id == 0) c->t1 = now_s();
}

static double fma_pass(int threads, double seconds, int isa) {
    fma_ctx c;
    memset(&c, 0, sizeof(c));
    c.seconds = seconds;
    c.isa = isa;
    if (threads > 256) threads = 256;
    const int used = team_run(threads, fma_body, &c);
    double total_flops = 0.0;
    for (int i = 0; i < used; i++) total_flops += c.flops[i];
    return c.t1 > c.t0 ? total_flops / (c.t1 - c.t0) * 1e-9 : 0.0;
}

double fp_measure_fma_peak(int threads, double seconds) {
    if (threads < 1) threads = 1;
    if (seconds <= 0) seconds = 0.2;
    int isa = fp_isa();
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        double g = fma_pass(threads, seconds / 3.0, isa);
        if (g > best) best = g;
    }
    return best;
}

typedef struct triad_ctx {
    double *a, *b, *c;
    int64_t n;
    double best;
} triad_ctx;

/* Each member works on its own static slice; member 0 times the passes between barriers. */
static void triad_body(team *tm, int id, void *vctx) {
    triad_ctx *t = (triad_ctx *)vctx;
    double *a = t->a, *b = t->b, *c = t->c;
    const int64_t n = t->n, lo = n * id / tm->threads, hi = n * (id + 1) / tm->threads;
    int sense = 0;
    /* First touch by the member that later streams the slice, so pages sit near their thread. */
    for (int64_t i = lo; i < hi; i++) {
        a[i] = 0.0;
        b[i] = 1.0;
        c[i] = 2.0;
    }
    const double s = 3.0;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = 0.0;
        team_barrier(tm, &sense);
        if (id == 0) t0 = now_s();
        team_barrier(tm, &sense);
        for (int64_t i = lo; i < hi; i++) a[i] = b[i] + s * c[i];
        team_barrier(tm, &sense);
        if (id == 0) {
            const double dt = now_s() - t0;
            /* STREAM's convention: 3 arrays moved per element (the write-allocate read is not counted). */
            const double gbs = dt > 0 ? 3.0 * (double)sizeof(double) * (double)n / dt * 1e-9 : 0.0;
            if (rep > 0 && gbs > t->best) t->best = gbs; /* rep 0 warms the TLB and the pages */
        }
    }
}

double fp_measure_triad(int threads, int64_t bytes) {
    if (threads < 1) threads = 1;
    if (bytes < 3 * 4096) bytes = 3 * 4096;
    int64_t n = bytes / (3 * (int64_t)sizeof(double));
    double *a = fp_aligned_alloc(n * (int64_t)sizeof(double));
    double *b = fp_aligned_alloc(n * (int64_t)sizeof(double));
    double *c_ = fp_aligned_alloc(n * (int64_t)sizeof(double));
    if (!a || !b || !c_) {
        fp_aligned_free(a);
        fp_aligned_free(b);
        fp_aligned_free(c_);
        return -1.0;
    }
    triad_ctx c = {a, b, c_, n, 0.0};
    team_run(threads > 256 ? 256 : threads, triad_body, &c);
    const double best = c.best;
    fp_measure_sink = (float)a[n / 2];
    fp_aligned_free(a);
    fp_aligned_free(b);
    fp_aligned_free(c_);
    return best;
}

static void nothing(void *ctx, int64_t chunk, int worker) {
    (void)ctx;
    (void)chunk;
    (void)worker;
}

double fp_measure_pool_wake_ns(int threads, int reps) {
    double best = -1;
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        fp_pool_run(threads, threads, nothing, NULL);
        const double dt = (now_s() - t0) * 1e9;
        if (best < 0 || dt < best) best = dt;
    }
    return best;
}
