/* The one thread pool of the C kernels: the calling thread works too, and waits only for chunks that a
 * helper has actually claimed.
 *
 * Why not an OpenMP team: a parallel region ends in a barrier that every thread of the team must
 * reach, so on a shared machine a helper that cannot get a core (woken while another process runs
 * there) holds the whole call for a scheduler time slice; measured on this 2-vCPU box under load:
 * 15 ms instead of 0.7 ms per layer at 2 threads.  Here chunks are claimed through atomic counters
 * (each worker's own range first, then the others'), so a helper that never gets the CPU simply takes
 * no chunk and the caller does them all.
 * Helpers spin briefly for the next job (back-to-back layers), then sleep on a condition variable. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getcpu, pthread_setaffinity_np */
#endif
#include <stdlib.h>

#include "internal.h"

#if (defined(__unix__) || defined(__APPLE__)) && !defined(FP_NO_PTHREADS)
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_HELPERS (FP_POOL_THREADS - 1)
/* Polls of the job word before sleeping: about 0.3 ms (pause is ~10 ns here).  It must outlast a chunk
 * of the caller plus the Python call overhead (~12 us), or helpers sleep between back-to-back calls
 * and pay a futex wake-up each time: 4000 polls gave 1.35x at 2 threads on 256->64@56, 30000 1.7x. */
#define SPIN_ROUNDS 30000

/* One job at a time (the `busy` lock); a caller that finds the pool busy runs its job alone.
 *
 * Joining is lock-free: a helper that sees a new generation announces itself in `active`, then
 * joins only if the job is still open and a worker slot is left.  No mutex sits on the hot path,
 * because with many helpers a mutex turns into a convoy: each one sleeps on the lock and is woken in
 * turn, and on a VM every wake-up of an idle vCPU costs tens of microseconds or more (measured: a
 * 1x1 layer took 4 ms at 16 threads with a mutex here, against 0.3 ms at 8).  The job record is
 * static, so a straggler that looks at it after the call returned reads valid memory; it sees the job
 * closed (or a newer open one, which it may then legitimately help with). */
static struct {
    fp_task_fn fn;
    void *ctx;
    int64_t nchunks;
    int helpers_wanted;
    int64_t done;              /* chunks finished */
    int joined;                /* worker slots taken */
    int open;                  /* chunks may still be claimed */
    int active;                /* helpers looking at or working on the job */
    uint64_t generation;       /* bumped for every job; polled by spinning helpers */
    int helpers;               /* helper threads started (under lock) */
    int caller_cpu;            /* CPU the caller ran on when it posted the job (-1: unknown) */
    pthread_mutex_t lock;      /* only for starting helpers and for sleeping/waking them */
    pthread_cond_t wake;
    pthread_mutex_t busy;
} P = {NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, -1, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
       PTHREAD_MUTEX_INITIALIZER};

/* A helper on the caller's CPU.  After a pause the sleeping helper is often woken onto the CPU of the
 * thread that woke it (the caller) and stays there, the other CPU idle: there it can only run by
 * preempting the caller, and it then spun out its whole wait for the next job (~0.3 ms) while the
 * caller, the only one who can post that job, waited for the CPU.  Measured on NHWC depthwise 384@14
 * at 2 threads, bench-like (150 ms pauses, then 50 ms of calls): ~110 calls of each sample took
 * ~370 us instead of 18 us, half the sample's time (docs/threads.md).  So a helper that finds itself
 * on the caller's CPU moves off it (its affinity: the process's CPUs less that one; redone when the
 * caller's CPU changes), and never spins there. */
#if defined(__linux__)
static int my_cpu(void) { return sched_getcpu(); }
static int same_cpu_as_caller(void) {
    const int c = __atomic_load_n(&P.caller_cpu, __ATOMIC_RELAXED);
    return c >= 0 && my_cpu() == c;
}
/* Move the calling helper off CPU `avoid`: its allowed CPUs become the process's (the main thread's
 * mask, so that a later taskset or os.sched_setaffinity is honoured; else the helper's mask at start)
 * less `avoid`, if that leaves a CPU; otherwise just the process's. */
static void move_off(const cpu_set_t *start_mask, int avoid) {
    cpu_set_t m;
    if (sched_getaffinity(getpid(), sizeof m, &m) != 0) m = *start_mask;
    if (avoid >= 0 && avoid < CPU_SETSIZE && CPU_ISSET(avoid, &m) && CPU_COUNT(&m) > 1) CPU_CLR(avoid, &m);
    pthread_setaffinity_np(pthread_self(), sizeof m, &m);
}
#else
static int my_cpu(void) { return -1; }
static int same_cpu_as_caller(void) { return 0; }
#endif

/* Chunks are dealt in T consecutive ranges, range w to worker w first (its own cache line each):
 * worker w takes the front of its own range, then the fronts of the others'.  Back-to-back calls of a
 * layer thus give each worker the same rows on every call, and the data those rows read stays in that
 * core's L2; with one shared counter the rows landed on either core from call to call and moved
 * between the two L2s (NHWC depthwise 960@7: 1.0x at 2 threads -> see docs/threads.md).  Claims are
 * still atomic and open to every worker, so a helper that gets no CPU holds nothing up: the others
 * take its range. */
static struct {
    int64_t next, end;
    char pad[64 - 2 * sizeof(int64_t)];
} __attribute__((aligned(64))) R[MAX_HELPERS + 1];
static int R_n; /* ranges of the current job */

/* Helper threads, for the caller to move one that holds a chunk but waits for a CPU (wait_helpers_out). */
static struct {
    pthread_t tid;
    int inside; /* between joining a job and finishing its chunks */
    int pulled; /* moved onto the caller's CPU by wait_helpers_out: to move off again after the job */
    char pad[64 - sizeof(pthread_t) - 2 * sizeof(int)];
} __attribute__((aligned(64))) H[MAX_HELPERS];

#ifdef FP_POOL_TRACE
/* Diagnostics build only (CFLAGS=-DFP_POOL_TRACE): one record per pooled call, written at exit to
 * $FP_POOL_TRACE_FILE.  Times in ns from the call's start. */
#include <stdio.h>
#define TR_MAX 400000
static struct tr {
    int64_t t0, posted, caller_done, end, helper_first, helper_last;
    int caller_cpu, caller_cpu_end, helper_cpu, caller_chunks, helper_chunks, helper_woke;
} TR[TR_MAX];
static int64_t TR_n;
static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static __thread int tr_woke;
__attribute__((destructor)) static void tr_dump(void) {
    const char *path = getenv("FP_POOL_TRACE_FILE");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    fprintf(f, "t0 posted caller_done end helper_first helper_last caller_cpu caller_cpu_end helper_cpu caller_chunks helper_chunks helper_woke\n");
    for (int64_t i = 0; i < TR_n && i < TR_MAX; i++) {
        struct tr *r = &TR[i];
        fprintf(f, "%lld %lld %lld %lld %lld %lld %d %d %d %d %d %d\n", (long long)r->t0, (long long)r->posted,
                (long long)r->caller_done, (long long)r->end, (long long)r->helper_first, (long long)r->helper_last,
                r->caller_cpu, r->caller_cpu_end, r->helper_cpu, r->caller_chunks, r->helper_chunks, r->helper_woke);
    }
    fclose(f);
}
#define TRACE(stmt) do { stmt; } while (0)
#else
#define TRACE(stmt) ((void)0)
#endif

static void work(int worker) {
    const int n = R_n;
    for (int k = 0; k < n; k++) {
        const int r = (worker + k) % n;
        const int64_t end = R[r].end;
        /* a peek first: a finished range costs a read, not a write to a line other workers poll */
        while (__atomic_load_n(&R[r].next, __ATOMIC_RELAXED) < end) {
            const int64_t c = __atomic_fetch_add(&R[r].next, 1, __ATOMIC_SEQ_CST);
            if (c >= end) break;
#ifdef FP_POOL_TRACE
            struct tr *t = &TR[TR_n < TR_MAX ? TR_n : TR_MAX - 1];
            if (worker == 0) t->caller_chunks++;
            else {
                if (!t->helper_chunks) { t->helper_first = now_ns() - t->t0; t->helper_cpu = sched_getcpu(); t->helper_woke = tr_woke; }
                t->helper_chunks++;
            }
#endif
            P.fn(P.ctx, c, worker);
            TRACE(if (worker) TR[TR_n < TR_MAX ? TR_n : TR_MAX - 1].helper_last = now_ns() - TR[TR_n < TR_MAX ? TR_n : TR_MAX - 1].t0);
            __atomic_fetch_add(&P.done, 1, __ATOMIC_SEQ_CST);
        }
    }
}

static void *helper_main(void *arg) {
    const int me = (int)(intptr_t)arg;
    uint64_t seen = __atomic_load_n(&P.generation, __ATOMIC_SEQ_CST);
    fp_flush_enter(); /* helpers only ever run kernel chunks: subnormals flushed for good (csrc/fpenv.c) */
#if defined(__linux__)
    cpu_set_t start_mask;
    const int have_mask = pthread_getaffinity_np(pthread_self(), sizeof start_mask, &start_mask) == 0;
#endif
    for (;;) {
        /* Spinning on the caller's CPU only delays the caller: check every ~64 polls (sched_getcpu is
         * a vDSO read): move off it, or sleep where that is not possible. */
        for (int s = 0; s < SPIN_ROUNDS && __atomic_load_n(&P.generation, __ATOMIC_SEQ_CST) == seen; s++) {
            if ((s & 63) == 63 && same_cpu_as_caller()) {
#if defined(__linux__)
                if (have_mask) move_off(&start_mask, P.caller_cpu);
#endif
                if (same_cpu_as_caller()) break;
            }
            cpu_relax();
        }
        if (__atomic_load_n(&P.generation, __ATOMIC_SEQ_CST) == seen) {
            pthread_mutex_lock(&P.lock);
            while (__atomic_load_n(&P.generation, __ATOMIC_SEQ_CST) == seen) pthread_cond_wait(&P.wake, &P.lock);
            pthread_mutex_unlock(&P.lock);
            TRACE(tr_woke = 1);
        } else TRACE(tr_woke = 0);
        seen = __atomic_load_n(&P.generation, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&P.active, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&H[me].inside, 1, __ATOMIC_SEQ_CST);
#if defined(__linux__)
        if (have_mask && same_cpu_as_caller()) move_off(&start_mask, P.caller_cpu);
#endif
        if (__atomic_load_n(&P.open, __ATOMIC_SEQ_CST)) {
            const int slot = __atomic_add_fetch(&P.joined, 1, __ATOMIC_SEQ_CST);
            if (slot <= P.helpers_wanted) work(slot);
        }
        __atomic_store_n(&H[me].inside, 0, __ATOMIC_SEQ_CST);
        __atomic_fetch_sub(&P.active, 1, __ATOMIC_SEQ_CST);
#if defined(__linux__)
        if (__atomic_exchange_n(&H[me].pulled, 0, __ATOMIC_SEQ_CST) && have_mask) move_off(&start_mask, P.caller_cpu);
#endif
    }
    return NULL;
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
#define PULL_AFTER_US 30

/* Wait until no helper is inside a job.  A helper that is may be waiting for a CPU, so after
 * PULL_AFTER_US of polling, bring it here and give this CPU up in turn. */
static void wait_helpers_out(void) {
    if (__atomic_load_n(&P.active, __ATOMIC_SEQ_CST) == 0) return;
    const int64_t t0 = now_us();
    int pulled = 0;
    for (int s = 0; __atomic_load_n(&P.active, __ATOMIC_SEQ_CST) > 0; s++) {
        if (s < 64 || (s & 63) || now_us() - t0 < PULL_AFTER_US) {
            cpu_relax();
            continue;
        }
#if defined(__linux__)
        /* A helper still inside the job after PULL_AFTER_US was most likely preempted on its CPU (kept
         * off this one by move_off) while holding a chunk; it would run again only after the other
         * task's time slice (4 ms here).  Move it onto this CPU and yield to it; once done with the
         * job it moves itself off again (H[].pulled). */
        const int cpu = my_cpu();
        if (!pulled && cpu >= 0 && cpu < CPU_SETSIZE) {
            cpu_set_t m;
            CPU_ZERO(&m);
            CPU_SET(cpu, &m);
            pthread_mutex_lock(&P.lock); /* P.helpers */
            for (int h = 0; h < P.helpers; h++)
                if (__atomic_load_n(&H[h].inside, __ATOMIC_SEQ_CST)) {
                    __atomic_store_n(&H[h].pulled, 1, __ATOMIC_SEQ_CST);
                    pthread_setaffinity_np(H[h].tid, sizeof m, &m);
                }
            pthread_mutex_unlock(&P.lock);
        }
#endif
        pulled = 1;
        sched_yield();
    }
}

/* A child of fork() has none of the helpers (and maybe a lock some helper held): start afresh. */
static void after_fork_child(void) {
    pthread_mutex_init(&P.lock, NULL);
    pthread_mutex_init(&P.busy, NULL);
    pthread_cond_init(&P.wake, NULL);
    P.open = 0;
    P.active = 0;
    P.helpers = 0;
    P.caller_cpu = -1;
}

/* Registered at load, so that a fork() racing with a first fp_pool_run in another thread is covered. */
__attribute__((constructor)) static void register_at_fork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

void fp_pool_run(int threads, int64_t nchunks, fp_task_fn fn, void *ctx) {
    if (threads > MAX_HELPERS + 1) threads = MAX_HELPERS + 1;
    if (threads <= 1 || nchunks <= 1 || pthread_mutex_trylock(&P.busy) != 0) {
        for (int64_t c = 0; c < nchunks; c++) fn(ctx, c, 0);
        return;
    }
#ifdef FP_POOL_TRACE
    struct tr *tr = &TR[TR_n < TR_MAX ? TR_n : TR_MAX - 1];
    *tr = (struct tr){0};
    tr->t0 = now_ns();
    tr->caller_cpu = sched_getcpu();
    tr->helper_first = tr->helper_last = -1;
    tr->helper_cpu = -1;
#endif
    /* Stragglers of the previous job may still be reading it: wait until they are gone. */
    wait_helpers_out();
    __atomic_store_n(&P.caller_cpu, my_cpu(), __ATOMIC_RELAXED); /* published by the generation bump */
    P.fn = fn;
    P.ctx = ctx;
    P.nchunks = nchunks;
    P.helpers_wanted = threads - 1;
    R_n = threads < nchunks ? threads : (int)nchunks;
    for (int r = 0; r < R_n; r++) {
        R[r].end = nchunks * (r + 1) / R_n;
        __atomic_store_n(&R[r].next, nchunks * r / R_n, __ATOMIC_SEQ_CST);
    }
    __atomic_store_n(&P.done, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&P.joined, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&P.open, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&P.lock);
    while (P.helpers < threads - 1) { /* started once, on first need; they live for the process */
        pthread_t t;
        H[P.helpers].inside = H[P.helpers].pulled = 0;
        if (pthread_create(&t, NULL, helper_main, (void *)(intptr_t)P.helpers) != 0) break;
        H[P.helpers].tid = t;
        pthread_detach(t);
        P.helpers++;
    }
    __atomic_add_fetch(&P.generation, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);
    TRACE(tr->posted = now_ns() - tr->t0);

    work(0);
    TRACE(tr->caller_done = now_ns() - tr->t0);

    /* No chunk is left to claim: close the job, then wait for every helper still inside it. */
    __atomic_store_n(&P.open, 0, __ATOMIC_SEQ_CST);
    wait_helpers_out();
    while (__atomic_load_n(&P.done, __ATOMIC_SEQ_CST) < nchunks) sched_yield(); /* not reached in practice */
#ifdef FP_POOL_TRACE
    tr->end = now_ns() - tr->t0;
    tr->caller_cpu_end = sched_getcpu();
    TR_n++;
#endif
    pthread_mutex_unlock(&P.busy);
}

#else

void fp_pool_run(int threads, int64_t nchunks, fp_task_fn fn, void *ctx) {
    (void)threads;
    for (int64_t c = 0; c < nchunks; c++) fn(ctx, c, 0);
}

#endif

void fp_chunk_range(int64_t jobs, int64_t nchunks, int64_t chunk, int64_t *lo, int64_t *hi) {
    *lo = jobs * chunk / nchunks;
    *hi = jobs * (chunk + 1) / nchunks;
}

int64_t fp_chunk_count(int64_t jobs, int threads) {
    if (threads <= 1 || jobs <= 1) return jobs < 1 ? 0 : 1;
    const int64_t want = (int64_t)threads * FP_CHUNKS_PER_THREAD;
    return jobs < want ? jobs : want;
}
