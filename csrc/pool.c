/* The one thread pool of the C kernels: the calling thread works too, and waits only for chunks that a
 * helper has actually claimed.
 *
 * Why not an OpenMP team: a parallel region ends in a barrier that every thread of the team must
 * reach, so on a shared machine a helper that cannot get a core (woken while another process runs
 * there) holds the whole call for a scheduler time slice; measured on this 2-vCPU box under load:
 * 15 ms instead of 0.7 ms per layer at 2 threads.  Here chunks go to whoever asks first (an atomic
 * counter), so a helper that never gets the CPU simply takes no chunk and the caller does them all.
 * Helpers spin briefly for the next job (back-to-back layers), then sleep on a condition variable. */
#include <stdlib.h>

#include "internal.h"

#if (defined(__unix__) || defined(__APPLE__)) && !defined(FP_NO_PTHREADS)
#include <pthread.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_HELPERS 255
/* Polls of the job word before sleeping: about 0.3 ms (pause is ~10 ns here).  It must outlast a chunk
 * of the caller plus the Python call overhead (~12 us), or helpers sleep between back-to-back calls
 * and pay a futex wake-up each time: 4000 polls gave 1.35x at 2 threads on 256->64@56, 30000 1.7x. */
#define SPIN_ROUNDS 30000

typedef struct job {
    fp_task_fn fn;
    void *ctx;
    int64_t nchunks;
    int helpers_wanted;        /* helpers that may join (T - 1) */
    int64_t next;              /* next chunk to hand out (atomic) */
    int64_t done;              /* chunks finished (atomic) */
    int joined;                /* helpers that joined (under the pool lock) */
    int active;                /* helpers inside the job (under the pool lock) */
} job;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, idle;
    job *current;              /* under lock; also polled while spinning */
    uint64_t generation;       /* bumped for every job (polled while spinning) */
    int helpers;
    pthread_mutex_t busy;      /* one job at a time; a concurrent caller runs its job alone */
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0,
       PTHREAD_MUTEX_INITIALIZER};

static void work(job *j, int worker) {
    for (;;) {
        const int64_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (c >= j->nchunks) break;
        j->fn(j->ctx, c, worker);
        __atomic_fetch_add(&j->done, 1, __ATOMIC_RELEASE);
    }
}

static void *helper_main(void *arg) {
    (void)arg;
    uint64_t seen = 0;
    fp_flush_enter(); /* helpers only ever run kernel chunks: subnormals flushed for good (csrc/fpenv.c) */
    for (;;) {
        for (int s = 0; s < SPIN_ROUNDS && __atomic_load_n(&P.generation, __ATOMIC_ACQUIRE) == seen; s++)
            cpu_relax();
        pthread_mutex_lock(&P.lock);
        while (P.generation == seen) pthread_cond_wait(&P.wake, &P.lock);
        seen = P.generation;
        job *j = P.current;
        int worker = 0;
        if (j && j->joined < j->helpers_wanted) {
            worker = ++j->joined;
            j->active++;
        } else {
            j = NULL;
        }
        pthread_mutex_unlock(&P.lock);
        if (!j) continue;
        work(j, worker);
        pthread_mutex_lock(&P.lock);
        if (--j->active == 0) pthread_cond_broadcast(&P.idle);
        pthread_mutex_unlock(&P.lock);
    }
    return NULL;
}

/* A child of fork() has none of the helpers (and maybe a lock some helper held): start afresh. */
static void after_fork_child(void) {
    pthread_mutex_init(&P.lock, NULL);
    pthread_mutex_init(&P.busy, NULL);
    pthread_cond_init(&P.wake, NULL);
    pthread_cond_init(&P.idle, NULL);
    P.current = NULL;
    P.helpers = 0;
}

/* Registered at load, so that a fork() racing with a first fp_pool_run in another thread is covered. */
__attribute__((constructor)) static void register_at_fork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

void fp_pool_run(int threads, int64_t nchunks, fp_task_fn fn, void *ctx) {
    if (threads > MAX_HELPERS + 1) threads = MAX_HELPERS + 1;
    if (threads <= 1 || nchunks <= 1 || pthread_mutex_trylock(&P.busy) != 0) {
        for (int64_t c = 0; c < nchunks; c++) fn(ctx, c, 0);
        return;
    }
    job j = {fn, ctx, nchunks, threads - 1, 0, 0, 0, 0};
    pthread_mutex_lock(&P.lock);
    while (P.helpers < threads - 1) { /* started once, on first need; they live for the process */
        pthread_t t;
        if (pthread_create(&t, NULL, helper_main, NULL) != 0) break;
        pthread_detach(t);
        P.helpers++;
    }
    P.current = &j;
    __atomic_add_fetch(&P.generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);

    work(&j, 0);

    /* No chunk is left to claim: close the job, then wait for the helpers that joined. */
    pthread_mutex_lock(&P.lock);
    P.current = NULL;
    while (j.active > 0) pthread_cond_wait(&P.idle, &P.lock);
    pthread_mutex_unlock(&P.lock);
    while (__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) < nchunks) sched_yield(); /* not reached in practice */
    pthread_mutex_unlock(&P.busy);
}

#else

void fp_pool_run(int threads, int64_t nchunks, fp_task_fn fn, void *ctx) {
    (void)threads;
    for (int64_t c = 0; c < nchunks; c++) fn(ctx, c, 0);
}

#endif

void **fp_scratch_new(int threads, int64_t bytes) {
    if (threads < 1) threads = 1;
    void **s = (void **)calloc((size_t)threads, sizeof(void *));
    if (!s) return NULL;
    for (int i = 0; i < threads; i++) {
        s[i] = fp_aligned_alloc(bytes);
        if (!s[i]) {
            fp_scratch_free(s, threads);
            return NULL;
        }
    }
    return s;
}

void fp_scratch_free(void **s, int threads) {
    if (!s) return;
    for (int i = 0; i < (threads < 1 ? 1 : threads); i++) fp_aligned_free(s[i]);
    free(s);
}

void fp_chunk_range(int64_t jobs, int64_t nchunks, int64_t chunk, int64_t *lo, int64_t *hi) {
    *lo = jobs * chunk / nchunks;
    *hi = jobs * (chunk + 1) / nchunks;
}

int64_t fp_chunk_count(int64_t jobs, int threads) {
    if (threads <= 1 || jobs <= 1) return jobs < 1 ? 0 : 1;
    const int64_t want = (int64_t)threads * FP_CHUNKS_PER_THREAD;
    return jobs < want ? jobs : want;
}
