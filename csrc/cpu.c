/* CPU feature and cache detection, done once; FASTPOINT_ISA=scalar|avx2|avx512 lowers the choice. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

#include "internal.h"

static int g_supported = -1;
static int g_isa = -1;

static int detect_supported(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FP_PORTABLE_ONLY)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0). */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("fma"))
        return FP_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FP_ISA_AVX2;
#endif
    return FP_ISA_SCALAR;
}

static int parse_isa(const char *s) {
    if (!s || !*s) return -1;
    if (!strcmp(s, "scalar") || !strcmp(s, "portable")) return FP_ISA_SCALAR;
    if (!strcmp(s, "avx2")) return FP_ISA_AVX2;
    if (!strcmp(s, "avx512")) return FP_ISA_AVX512;
    return -1;
}

static void init_once(void) {
    if (g_supported >= 0) return;
    int supported = detect_supported();
    int isa = supported;
    int requested = parse_isa(getenv("FASTPOINT_ISA"));
    if (requested >= 0 && requested < supported) isa = requested;
    g_isa = isa;
    g_supported = supported;
}

int fp_isa_supported(void) { init_once(); return g_supported; }
int fp_isa(void) { init_once(); return g_isa; }

int fp_set_isa(int isa) {
    init_once();
    if (isa < FP_ISA_SCALAR) isa = FP_ISA_SCALAR;
    g_isa = isa > g_supported ? g_supported : isa;
    return g_isa;
}

const char *fp_isa_name(int isa) {
    switch (isa) {
    case FP_ISA_AVX512: return "avx512";
    case FP_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

int64_t fp_cache_size(int level) {
    long v = -1;
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    if (level == 1) v = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (level == 2) v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (level == 3) v = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (v > 0) return (int64_t)v;
    /* Conservative defaults where the OS does not say (macOS, some VMs). */
    return level == 1 ? 32 * 1024 : level == 2 ? 1024 * 1024 : 8 * 1024 * 1024;
}

/* Bytes of the last-level cache one thread may count on for a block that every pass of an inner loop
 * re-reads (the GEMM's packed kc x nc block of X, the direct driver's input strip): its share of L3 (half
 * of L3 over the pool's threads), at least L2 and at most 4 L2.  The cap because the OS often reports the
 * whole socket's L3 (384 MiB on a 12-CCD EPYC whose core sees 32 MiB) and because the block is per-thread
 * scratch: past a few L2 sizes the weights it amortizes are re-streamed rarely enough (measured: direct
 * 2048->512 3x3 @32 gains nothing between 4 and 20 MB of strip). */
int64_t fp_cache_share(void) {
    const int64_t l2 = fp_cache_size(2), l3 = fp_cache_size(3);
    return FP_MAX(l2, FP_MIN(l3 / (2 * (int64_t)fp_max_threads()), 4 * l2));
}

/* Processors this process may run on: the affinity mask where there is one (taskset, cgroup cpusets),
 * else the online count. */
static int count_procs(void) {
    int n = 0;
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
#endif
#if defined(_SC_NPROCESSORS_ONLN)
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? n : 1;
}

static int g_max_threads_override; /* fp_set_max_threads (tests): 0 = detect */

void fp_set_max_threads(int n) { g_max_threads_override = n > 0 ? n : 0; }

int fp_max_threads(void) {
    if (g_max_threads_override > 0) return g_max_threads_override;
#if (defined(__unix__) || defined(__APPLE__)) && !defined(FP_NO_PTHREADS)
    static int procs = 0; /* cached: asked on every call (a benign race, every thread stores the same value) */
    if (procs < 1) procs = count_procs();
    return procs;
#else
    (void)count_procs;
    return 1;
#endif
}

void *fp_aligned_alloc(int64_t bytes) {
    void *ptr = NULL;
    if (bytes <= 0) bytes = FP_ALIGN;
    if (posix_memalign(&ptr, FP_ALIGN, (size_t)bytes) != 0) return NULL;
    return ptr;
}

void fp_aligned_free(void *ptr) { free(ptr); }
