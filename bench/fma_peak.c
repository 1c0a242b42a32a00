/* FMA peak of this CPU: 12 independent chains of vfmadd231ps (zmm and ymm) in an inline-asm loop,
 * per thread, best of 3.  Dev benchmark; run under the shared lock:
 *   gcc -O2 -fopenmp -o /tmp/fma_peak bench/fma_peak.c && flock /tmp/fp-bench.lock /tmp/fma_peak 1 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define FMA12(R)                                                                                     \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "0\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "1\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "2\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "3\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "4\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "5\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "6\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "7\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "8\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "9\n\t"                                                 \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "10\n\t"                                                \
    "vfmadd231ps %%" R "13, %%" R "14, %%" R "11\n\t"

__attribute__((target("avx512f"))) static double run(long iters, int zmm) {
    double t0 = omp_get_wtime();
    long n = iters;
    if (zmm)
        __asm__ volatile("vxorps %%xmm13, %%xmm13, %%xmm13\n\tvxorps %%xmm14, %%xmm14, %%xmm14\n"
                         "1:\n\t" FMA12("zmm") "dec %0\n\tjnz 1b\n\t"
                         : "+r"(n) : : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                           "xmm9", "xmm10", "xmm11", "xmm13", "xmm14", "cc");
    else
        __asm__ volatile("vxorps %%xmm13, %%xmm13, %%xmm13\n\tvxorps %%xmm14, %%xmm14, %%xmm14\n"
                         "1:\n\t" FMA12("ymm") "dec %0\n\tjnz 1b\n\t"
                         : "+r"(n) : : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                           "xmm9", "xmm10", "xmm11", "xmm13", "xmm14", "cc");
    __asm__ volatile("vzeroupper");
    return (double)iters * 12 * (zmm ? 32 : 16) / (omp_get_wtime() - t0) / 1e9;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 1;
    double best[2] = {0, 0};
    for (int rep = 0; rep < 3; rep++)
        for (int z = 0; z < 2; z++) {
            double s = 0;
#pragma omp parallel num_threads(nt) reduction(+ : s)
            s += run(200000000L, z);
            if (s > best[z]) best[z] = s;
        }
    printf("threads %d: zmm (AVX-512) %.1f GFLOP/s, ymm (AVX2/AVX-512VL) %.1f GFLOP/s\n", nt, best[1], best[0]);
    return 0;
}
