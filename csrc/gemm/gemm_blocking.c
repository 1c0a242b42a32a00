/* Block sizes from the detected caches (analytical, after Low et al. 2016):
 *   KC: see below (large, so that C is rarely revisited);
 *   MC: the MC x KC block of A stays in half of L2 while the jr loop sweeps B micro-panels;
 *   NC: the packed KC x NC block of B stays in the other half of L2 while the ic loop reuses it.
 * KC is balanced so that K splits into nearly equal blocks (no tiny last block). */
#include "gemm.h"

static int64_t round_down(int64_t v, int64_t m) { return v < m ? m : v / m * m; }

fp_gemm_blocks fp_gemm_blocking(const fp_sgemm_ukr *uk, int64_t m, int64_t n, int64_t k) {
    const int64_t l2 = fp_cache_size(2);
    const int64_t fsz = (int64_t)sizeof(float);
    fp_gemm_blocks b;
    /* Measured on Sapphire Rapids (bench/layer_bench.c): a KC of 1024, whose B micro-panel streams from
     * L2 rather than sitting in L1, beats 128..512 by 3-8 %, because C is then rarely read back.
     * Kernels without L1 residency needs therefore get KC from L2: the A and B micro-panels
     * (MR + NR) x KC take at most a quarter of it. */
    const int64_t kc_max = FP_MIN(FP_MAX(l2 / 4 / ((uk->mr + uk->nr) * fsz), 64), 1024);
    /* A K up to 1.5x the cap in one block beats two half-empty ones. */
    int64_t nkb = k <= kc_max + kc_max / 2 ? 1 : FP_CEIL_DIV(k, kc_max);
    b.kc = FP_CEIL_DIV(k, nkb);
    if (b.kc < k) b.kc = FP_MIN(k, FP_CEIL_DIV(b.kc, 8) * 8);
    b.mc = round_down(FP_MAX(l2 / 2 / (b.kc * fsz), uk->mr), uk->mr);
    b.mc = FP_MIN(b.mc, FP_CEIL_DIV(m, uk->mr) * uk->mr);
    b.nc = round_down(FP_MAX(l2 / 2 / (b.kc * fsz), uk->nr), uk->nr);
    b.nc = FP_MIN(b.nc, FP_CEIL_DIV(n, uk->nr) * uk->nr);
    if (b.nc < uk->nr) b.nc = uk->nr;
    return b;
}

/* The NCHW form packs each kc x nc block of X once per (jc, pc) and every MC block of W then reads it:
 * W, swept once per nc columns, is what streams from L3 when it outgrows L2 (8 MiB for 1024->2048), so nc
 * takes the thread's share of the last-level cache instead of half of L2.  1024->2048 @32x32, 1 thread:
 * nc 96 (half of L2) 139 GFLOP/s, nc 1024 (4 MiB) 175-192 (loaded box, CPU time, best of 9). */
int64_t fp_gemm_nc_shared(const fp_sgemm_ukr *uk, int64_t kc, int64_t n) {
    const int64_t nc = round_down(FP_MAX(fp_cache_share() / (kc * (int64_t)sizeof(float)), uk->nr), uk->nr);
    return FP_MAX(uk->nr, FP_MIN(nc, FP_CEIL_DIV(n, uk->nr) * uk->nr));
}
