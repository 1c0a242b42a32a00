/* A/B of builds of the C kernels on one 1x1 layer with a network's epilogue (dev tool).  Each library
 * argument is a shared library built from a csrc/ tree; calls alternate between them in ~20 ms samples
 * and the medians are printed, so a loaded machine's slices hit every variant alike.  Time: the thread's
 * CPU time at 1 thread, wall time at more (AB_PCPU=1: the process's CPU time, both threads' cycles).
 * Outputs are compared with the first library's, bit for bit.
 *
 * A library argument may set int globals the variant exports before its first call, for variants of one
 * build: /tmp/v1.so:fp_gemm_knob=2,fp_gemm_ks=128 (each argument is loaded from its own copy of the file,
 * so the same build under different settings is separate code and data).
 *
 * Build a variant (all of csrc/, the package's flags):
 *   gcc -O3 -std=gnu11 -fno-math-errno -fno-trapping-math -pthread -fPIC -shared -Icsrc \
 *       $(find csrc -name '*.c') -o /tmp/v0.so -lm
 *   (on a loaded box compile the files outside csrc/gemm once to objects and relink those with each
 *   variant's csrc/gemm objects and csrc/kernel_table.c)
 * Build:  gcc -O2 -Icsrc bench/gemm_ab.c -o /tmp/gemm_ab -ldl
 * Run:    /tmp/gemm_ab cin cout hw layout(0 NCHW, 1 NHWC) threads samples epilogue lib...
 *         epilogue: 0 none, 1 ReLU (fp_epilogue), 2 residual Add + ReLU (fcn's bottleneck ends)
 *         e.g. /tmp/gemm_ab 512 2048 32 1 1 15 2 /tmp/v0.so /tmp/v1.so
 *         AB_BATCH=32 AB_ROW=1 /tmp/gemm_ab 128 1024 1024 0 2 15 0 ...: PointNet's 128->1024 kernel-1 conv1d
 *         (32 images of one 1024-pixel row).  Each line also gives the wall-time median. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fastpoint.h"

#define MAX_LIBS 8

typedef int (*conv_fn)(const fp_conv_problem *, const float *, const void *, const float *, float *,
                       const fp_epilogue *);
typedef int (*pack_fn)(const fp_conv_problem *, const float *, void *);
typedef int64_t (*packed_bytes_fn)(const fp_conv_problem *, int);

static double clock_of(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *aligned(int64_t bytes) { return aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64)); }

/* Load lib (path[:name=value,...]) from a private copy, setting the named int globals. */
static void *load(const char *arg, int index) {
    char path[512], copy[600], cmd[1300];
    snprintf(path, sizeof path, "%s", arg);
    char *settings = strchr(path, ':');
    if (settings) *settings++ = 0;
    snprintf(copy, sizeof copy, "/tmp/gemm_ab_%d_%d.so", (int)getpid(), index);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, copy);
    if (system(cmd) != 0) return NULL;
    void *h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    unlink(copy);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return NULL;
    }
    for (char *s = settings ? strtok(settings, ",") : NULL; s; s = strtok(NULL, ",")) {
        char *eq = strchr(s, '=');
        if (!eq) return NULL;
        *eq = 0;
        int *var = (int *)dlsym(h, s);
        if (!var) {
            fprintf(stderr, "%s exports no %s\n", path, s);
            return NULL;
        }
        *var = atoi(eq + 1);
    }
    return h;
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: %s cin cout hw layout threads samples epilogue lib...\n", argv[0]);
        return 2;
    }
    fp_conv_problem p;
    memset(&p, 0, sizeof p);
    const int64_t cin = atol(argv[1]), cout = atol(argv[2]), hw = atol(argv[3]);
    /* AB_BATCH=n: a batch of n images; AB_ROW=1: each image one row of hw pixels (a kernel-1 conv1d) */
    p.n = getenv("AB_BATCH") ? atol(getenv("AB_BATCH")) : 1;
    p.cin = cin; p.cout = cout; p.h = p.w = p.oh = p.ow = hw;
    if (getenv("AB_ROW")) p.h = p.oh = 1;
    p.kh = p.kw = 1; p.stride_h = p.stride_w = 1; p.dil_h = p.dil_w = 1; p.groups = 1;
    p.layout = atoi(argv[4]);
    p.num_threads = atoi(argv[5]);
    const int samples = atoi(argv[6]), epk = atoi(argv[7]), nl = argc - 8;
    if (nl > MAX_LIBS) return 2;
    const int64_t nx = p.n * cin * p.h * p.w, ny = p.n * cout * p.oh * p.ow;
    float *x = aligned(4 * nx), *w = aligned(4 * cout * cin), *b = aligned(4 * cout), *y = aligned(4 * ny),
          *res = aligned(4 * ny), *y0 = aligned(4 * ny);
    /* small integers: every summation order gives the same floats */
    for (int64_t i = 0; i < nx; i++) x[i] = (float)(i % 7 - 3);
    for (int64_t i = 0; i < cout * cin; i++) w[i] = (float)((i * 13) % 5 - 2);
    for (int64_t i = 0; i < cout; i++) b[i] = 1.0f;
    for (int64_t i = 0; i < ny; i++) res[i] = (float)(i % 3 - 1);
    fp_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.kind = FP_ACT_RELU;
    ep.residual = epk == 2 ? res : NULL;
    const fp_epilogue *epp = epk ? &ep : NULL;

    conv_fn conv[MAX_LIBS];
    void *packed[MAX_LIBS];
    double *t[MAX_LIBS], *tw[MAX_LIBS], *tk[MAX_LIBS];
    int64_t *chunk_ns[MAX_LIBS]; /* a variant's optional fp_gemm_chunk_ns: thread CPU time inside its chunks */
    for (int l = 0; l < nl; l++) {
        void *h = load(argv[8 + l], l);
        if (!h) return 1;
        conv[l] = (conv_fn)dlsym(h, "fp_conv_ep_f32");
        packed_bytes_fn pb = (packed_bytes_fn)dlsym(h, "fp_packed_bytes");
        pack_fn pack = (pack_fn)dlsym(h, "fp_pack_f32");
        if (!conv[l] || !pb || !pack) return 1;
        packed[l] = aligned(pb(&p, 0));
        t[l] = malloc(sizeof(double) * (size_t)samples);
        tw[l] = malloc(sizeof(double) * (size_t)samples);
        tk[l] = malloc(sizeof(double) * (size_t)samples);
        chunk_ns[l] = (int64_t *)dlsym(h, "fp_gemm_chunk_ns");
        if (pack(&p, w, packed[l]) != 0 || conv[l](&p, x, packed[l], b, y, epp) != 0) {
            fprintf(stderr, "%s failed\n", argv[8 + l]);
            return 1;
        }
        if (l == 0) memcpy(y0, y, (size_t)(4 * ny));
        else if (memcmp(y0, y, (size_t)(4 * ny)) != 0) printf("%s: output differs from the first\n", argv[8 + l]);
    }
    const clockid_t id = getenv("AB_PCPU") ? CLOCK_PROCESS_CPUTIME_ID
                         : p.num_threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    const double t0 = clock_of(CLOCK_MONOTONIC);
    conv[0](&p, x, packed[0], b, y, epp);
    const int reps = (int)(0.02 / (clock_of(CLOCK_MONOTONIC) - t0)) + 1; /* calls per ~20 ms sample */
    for (int s = 0; s < samples; s++)
        for (int l = 0; l < nl; l++) {
            const int64_t k0 = chunk_ns[l] ? __atomic_load_n(chunk_ns[l], __ATOMIC_RELAXED) : 0;
            const double c0 = clock_of(id), w0 = clock_of(CLOCK_MONOTONIC);
            for (int i = 0; i < reps; i++) conv[l](&p, x, packed[l], b, y, epp);
            t[l][s] = (clock_of(id) - c0) / reps;
            tw[l][s] = (clock_of(CLOCK_MONOTONIC) - w0) / reps;
            tk[l][s] = chunk_ns[l] ? 1e-9 * (double)(__atomic_load_n(chunk_ns[l], __ATOMIC_RELAXED) - k0) / reps : 0;
        }
    const double flops = 2.0 * cout * cin * p.n * p.oh * p.ow;
    for (int l = 0; l < nl; l++) {
        qsort(t[l], (size_t)samples, sizeof(double), cmp);
        qsort(tw[l], (size_t)samples, sizeof(double), cmp);
        qsort(tk[l], (size_t)samples, sizeof(double), cmp);
        printf("%ld->%ld@%ld %s T%d ep%d %-28s %6.1f GFLOP/s (median %.3f ms, quartile %.1f, best %.1f; wall median"
               " %.3f ms; in chunks %.1f GFLOP/s)\n",
               (long)cin, (long)cout, (long)hw, p.layout ? "NHWC" : "NCHW", p.num_threads, epk, argv[8 + l],
               flops / t[l][samples / 2] * 1e-9, t[l][samples / 2] * 1e3, flops / t[l][samples / 4] * 1e-9,
               flops / t[l][0] * 1e-9, tw[l][samples / 2] * 1e3,
               tk[l][samples / 2] > 0 ? flops / tk[l][samples / 2] * 1e-9 : 0.0);
    }
    return 0;
}
