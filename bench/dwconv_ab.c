/* A/B timing of builds of the depthwise kernels on one layer (dev tool), like bench/direct_ab.c but
 * for groups = cin, with the input and output placed at chosen float offsets from 64-byte alignment
 * (NumPy's large arrays start 16 bytes past a page: offset 4).  Calls alternate between the
 * libraries and the median of ~20 ms samples is printed.
 * Build a variant: gcc -O3 -std=gnu11 -fno-math-errno -fno-trapping-math -pthread -fPIC -shared -Icsrc csrc/*.c csrc/{direct,dwconv,gemm,generic}/*.c -o /tmp/v0.so -lm
 * Build:  gcc -O2 -Icsrc bench/dwconv_ab.c -o /tmp/dwconv_ab -ldl
 * Run:    /tmp/dwconv_ab C h w k stride pad layout(0 NCHW, 1 NHWC) threads reps xoff yoff /tmp/v0.so /tmp/v1.so ...
 *         (AB_N=8 for batch 8) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastpoint.h"
typedef int (*conv_t)(const fp_conv_problem *, const float *, const void *, const float *, float *);
typedef int (*pack_t)(const fp_conv_problem *, const float *, void *);
typedef int64_t (*pb_t)(const fp_conv_problem *, int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 13) {
        fprintf(stderr, "usage: C h w k stride pad layout threads reps xoff yoff lib...\n");
        return 2;
    }
    fp_conv_problem p;
    memset(&p, 0, sizeof p);
    const int64_t C = atol(argv[1]), h = atol(argv[2]), w = atol(argv[3]), k = atol(argv[4]), s = atol(argv[5]),
                  pad = atol(argv[6]);
    p.n = getenv("AB_N") ? atol(getenv("AB_N")) : 1;
    p.cin = p.cout = p.groups = C;
    p.h = h; p.w = w; p.kh = p.kw = k; p.stride_h = p.stride_w = s; p.pad_top = p.pad_left = pad;
    p.dil_h = p.dil_w = 1;
    p.oh = (h + 2 * pad - (k - 1) - 1) / s + 1;
    p.ow = (w + 2 * pad - (k - 1) - 1) / s + 1;
    p.layout = atoi(argv[7]); p.relu = 1; p.num_threads = atoi(argv[8]);
    const int reps = atoi(argv[9]), xoff = atoi(argv[10]), yoff = atoi(argv[11]), nl = argc - 12;
    const int64_t nx = p.n * C * h * w, ny = p.n * C * p.oh * p.ow;
    float *xa = aligned_alloc(64, 4 * (nx + 64)), *ya = aligned_alloc(64, 4 * (ny + 64));
    float *x = xa + xoff, *y = ya + yoff, *wt = malloc(4 * C * k * k), *b = malloc(4 * C);
    for (int64_t i = 0; i < nx; i++) x[i] = (float)(i % 7 - 3);
    for (int64_t i = 0; i < C * k * k; i++) wt[i] = (float)(i % 5 - 2);
    for (int64_t i = 0; i < C; i++) b[i] = 1;
    conv_t cv[8];
    void *pk[8];
    double *ts[8];
    const double bytes = 4.0 * (nx + ny), fl = 2.0 * ny * k * k;
    for (int l = 0; l < nl; l++) {
        void *hd = dlopen(argv[12 + l], RTLD_NOW | RTLD_LOCAL);
        if (!hd) { printf("%s\n", dlerror()); return 1; }
        cv[l] = (conv_t)dlsym(hd, "fp_conv_f32");
        pb_t pb = (pb_t)dlsym(hd, "fp_packed_bytes");
        pack_t pf = (pack_t)dlsym(hd, "fp_pack_f32");
        pk[l] = malloc(pb(&p, 0));
        pf(&p, wt, pk[l]);
        ts[l] = malloc(sizeof(double) * reps);
    }
    double t0 = now();
    for (int i = 0; i < 3; i++) cv[0](&p, x, pk[0], b, y);
    int it = (int)(0.02 / ((now() - t0) / 3));
    if (it < 1) it = 1;
    for (int r = 0; r < reps; r++)
        for (int l = 0; l < nl; l++) {
            double t = now();
            for (int i = 0; i < it; i++) cv[l](&p, x, pk[l], b, y);
            ts[l][r] = (now() - t) / it;
        }
    for (int l = 0; l < nl; l++) {
        qsort(ts[l], reps, sizeof(double), cmp);
        const double med = ts[l][reps / 2];
        printf("%-22s %7.1f GF %6.1f GB/s (med %.2f us, min %.2f us)\n", argv[12 + l], fl / med * 1e-9, bytes / med * 1e-9,
               med * 1e6, ts[l][0] * 1e6);
    }
    return 0;
}
