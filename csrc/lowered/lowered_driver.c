/* The loops of a lowered GEMM (BLIS order: jc (NC) > pc (KC) > ic (MC) > jr (NR) > ir (MR)) and the split
 * of the work between threads: column tiles of all images in one sequence when there are enough of them
 * for every thread, else row tiles (e.g. a U-Net up-convolution at 28x28: 17 column tiles, 256 row tiles). */
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "lowered.h"

#define LOWERED_MAGIC 0x46504c31u /* "FPL1" */

typedef struct header {
    uint32_t magic;
    int32_t row;   /* the gemm row packed for (fp_kernel_index): a forced or lowered choice must match */
    int64_t m, k;
    int32_t form;  /* FP_LOWERED_PANELS_A or FP_LOWERED_PANELS_B: which panels follow */
    int32_t unused;
    int64_t reserved[4];
} header;

int64_t fp_lowered_header_bytes(void) { return (int64_t)sizeof(header); }

float *fp_lowered_header_init(void *packed, int64_t m, int64_t k, int form) {
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(fp_isa());
    header *h = (header *)packed;
    memset(h, 0, sizeof *h);
    h->magic = LOWERED_MAGIC, h->row = fp_kernel_index(&uk->k), h->m = m, h->k = k, h->form = form;
    return (float *)((char *)packed + sizeof(header));
}

int64_t fp_lowered_packed_bytes(int64_t m, int64_t k) {
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(fp_isa());
    return (int64_t)sizeof(header) + (int64_t)sizeof(float) * FP_CEIL_DIV(m, uk->mr) * uk->mr * k;
}

int fp_lowered_pack(int64_t m, int64_t k, const float *w, void *packed, int threads) {
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(fp_isa());
    fp_sgemm_ukr plain = *uk;
    plain.extended = 0; /* the MR-row panels only: no W^T copy for the transposed small-image form */
    fp_conv_problem q;
    memset(&q, 0, sizeof q);
    q.cout = m, q.cin = k, q.kh = q.kw = 1, q.groups = 1, q.layout = 0;
    q.num_threads = threads; /* panels split across the pool from 256 KiB (fp_pack_jobs) */
    fp_gemm_pack_weights(&q, &plain, w, fp_lowered_header_init(packed, m, k, FP_LOWERED_PANELS_A));
    return FP_OK;
}

typedef struct kmajor_task {
    int64_t m, k, mr, panels, chunks;
    const float *w;
    float *dst;
} kmajor_task;

/* Panels [pi0, pi1): a block of KMAJOR_ROWS k rows at a time for all of them, so that the source is read in
 * runs along its rows (m floats each, the panels side by side) and each panel gets a contiguous run of rows,
 * rather than one 4-byte-strided gather of a whole column of rows per panel (8 KB apart for U-Net's 1024 ->
 * 512 up-convolution: every read a new line and page). */
#define KMAJOR_ROWS 32

void fp_lowered_kmajor_panels(int64_t m, int64_t k, const float *w, int64_t pi0, int64_t pi1, float *dst) {
    const int64_t MR = fp_sgemm_ukr_pick(fp_isa())->mr;
    for (int64_t k0 = 0; k0 < k; k0 += KMAJOR_ROWS)
        for (int64_t pi = pi0; pi < pi1; pi++)
            for (int64_t kk = k0; kk < FP_MIN(k, k0 + KMAJOR_ROWS); kk++) {
                const float *src = w + kk * m + pi * MR;
                float *d = dst + ((pi - pi0) * k + kk) * MR; /* panel pi, row kk: MR floats */
                if ((pi + 1) * MR <= m) {
                    fp_copy_short(d, src, MR);
                    continue;
                }
                for (int64_t r = 0; r < MR; r++) d[r] = pi * MR + r < m ? src[r] : 0.0f;
            }
}

static void pack_kmajor_job(void *ctx, int64_t c, int worker) {
    const kmajor_task *T = (const kmajor_task *)ctx;
    int64_t pi0, pi1;
    (void)worker;
    fp_chunk_range(T->panels, T->chunks, c, &pi0, &pi1);
    fp_lowered_kmajor_panels(T->m, T->k, T->w, pi0, pi1, T->dst + pi0 * T->k * T->mr);
}

int fp_lowered_pack_kmajor(int64_t m, int64_t k, const float *w, void *packed, int threads) {
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(fp_isa());
    const int64_t MR = uk->mr;
    float *dst = fp_lowered_header_init(packed, m, k, FP_LOWERED_PANELS_A);
    kmajor_task T = {m, k, MR, FP_CEIL_DIV(m, MR), 1, w, dst};
    /* Threads split the panels (disjoint outputs) once the weights are large enough to pay for a start. */
    threads = threads < 1 ? 1 : FP_MIN(threads, fp_max_threads());
    if (threads == 1 || m * k < (int64_t)1 << 16) {
        fp_lowered_kmajor_panels(m, k, w, 0, T.panels, dst);
        return FP_OK;
    }
    T.chunks = FP_MIN(T.panels, (int64_t)threads * FP_CHUNKS_PER_THREAD);
    fp_pool_run(threads, T.chunks, pack_kmajor_job, &T);
    return FP_OK;
}

void fp_lowered_problem(const fp_conv_problem *p, fp_conv_problem *q) {
    *q = *p;
    const int cap = fp_max_threads();
    q->num_threads = q->num_threads < 1 ? 1 : q->num_threads > cap ? cap : q->num_threads;
}

const float *fp_lowered_begin_form(const fp_conv_problem *p, const void *packed, int64_t m, int64_t k, int form,
                                   const fp_sgemm_ukr **uk, fp_conv_problem *q) {
    const header *h = (const header *)packed;
    *uk = fp_sgemm_ukr_pick(fp_isa());
    if (h->magic != LOWERED_MAGIC || h->row != fp_kernel_index(&(*uk)->k) || h->m != m || h->k != k || h->form != form)
        return NULL;
    fp_lowered_problem(p, q);
    return (const float *)((const char *)packed + sizeof(header));
}

const float *fp_lowered_begin(const fp_conv_problem *p, const void *packed, int64_t m, int64_t k,
                              const fp_sgemm_ukr **uk, fp_conv_problem *q) {
    return fp_lowered_begin_form(p, packed, m, k, FP_LOWERED_PANELS_A, uk, q);
}

typedef struct task {
    const fp_lowered *L;
    fp_gemm_blocks bs;
    int64_t mstep; /* rows of a row block: bs.mc, or whole units where init / finish own them */
    int by_columns;
    int64_t col_tiles, row_tiles, nchunks;
    int failed;
} task;

/* Columns of one row-copy segment: a whole number of tiles, MR x ROW_COPY_COLS floats within L1. */
static int64_t row_copy_cols(int64_t NR) { return NR * FP_MAX(1, 512 / NR); }

/* d[0, n) = s[0, n) with non-temporal stores where d is 16-byte aligned (SSE, the x86-64 baseline): the
 * output row of a GEMM whose row stride is not a multiple of 64 bytes, so that the micro-kernels, which
 * stream 64-byte aligned rows only, would read every output line before writing it. */
static void stream_copy(float *d, const float *s, int64_t n) {
#if defined(__SSE__)
    int64_t u = 0;
    for (; u < n && ((uintptr_t)(d + u) & 15); u++) d[u] = s[u];
    for (; u + 4 <= n; u += 4) _mm_stream_ps(d + u, _mm_loadu_ps(s + u));
    for (; u < n; u++) d[u] = s[u];
#else
    memcpy(d, s, sizeof(float) * (size_t)n);
#endif
}

/* A of the tile from row ir, k block pc (u->mr set): the packed panel `panel` (ir's, from its first k), or
 * MR pointers into L->a_rows, the rows past mr repeating the last one (read, never stored). */
static inline void set_a(const fp_lowered *L, fp_ukr_args *u, int64_t ir, int64_t pc, const float *panel,
                         const float **wrows) {
    if (!L->a_rows) {
        u->a = panel + pc * L->uk->mr;
        return;
    }
    for (int64_t i = 0; i < L->uk->mr; i++) wrows[i] = L->a_rows + (ir + FP_MIN(i, u->mr - 1)) * L->k + pc;
    u->arows = wrows;
}

/* The jr x ir loops of one (jc, pc, ic) block for an output whose rows are not 64-byte aligned: MR rows x
 * row_copy_cols columns at a time into an L1 buffer, then copied out with streaming stores. */
static void block_row_copy(const task *t, fp_ukr_args *u, float *yn, int64_t ic, int64_t ie, int64_t jc,
                           int64_t jn, int64_t kc, int64_t pc, const float *buf, float *rows) {
    const fp_lowered *L = t->L;
    const fp_sgemm_ukr *uk = L->uk;
    const int64_t MR = uk->mr, NR = uk->nr, CW = row_copy_cols(NR);
    const float *wrows[FP_LOWERED_MAX_MR];
    for (int64_t js = jc; js < jc + jn; js += CW) {
        const int64_t cw = FP_MIN(CW, jc + jn - js);
        for (int64_t ir = ic; ir < ie; ir += MR) {
            u->mr = FP_MIN(MR, L->m - ir);
            set_a(L, u, ir, pc, L->a ? L->a + ir * L->k : NULL, wrows);
            u->bias = L->bias ? L->bias + ir : NULL;
            u->ldc = CW;
            for (int64_t jr = js; jr < js + cw; jr += NR) {
                u->nr = FP_MIN(NR, js + cw - jr);
                u->b = buf + (jr - jc) * kc;
                u->c = rows + (jr - js);
                uk->run(u);
            }
            for (int64_t r = 0; r < u->mr; r++) stream_copy(yn + (ir + r) * L->n + js, rows + r * CW, cw);
        }
    }
}

static void block(const task *t, const float *xn, float *yn, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                  float *buf, float *tile, float *ablock) {
    const fp_lowered *L = t->L;
    const fp_sgemm_ukr *uk = L->uk;
    const int64_t K = L->k, MR = uk->mr, NR = uk->nr;
    const int64_t mstep = t->mstep;
    fp_ukr_args u;
    memset(&u, 0, sizeof u);
    u.bias_per_col = 0;
    const float *wrows[FP_LOWERED_MAX_MR];
    /* Written in place in one k block, an output larger than L2 streams past the caches, as the 1x1 GEMM's
     * does (the micro-kernel streams full, aligned rows only; chunk() fences). */
    u.stream = uk->extended && !L->store && K <= t->bs.kc &&
               (int64_t)sizeof(float) * L->m * L->n * L->p->n > fp_cache_size(2);
    /* rows not 64-byte aligned (wav2vec2's 3199 outputs: 2.2x slower than 3200 without this) */
    const int row_copy = u.stream && L->n % 16 != 0;
    if (row_copy) u.stream = 0;
    for (int64_t jc = c0; jc < c1; jc += t->bs.nc) {
        const int64_t jn = FP_MIN(t->bs.nc, c1 - jc);
        for (int64_t pc = 0; pc < K; pc += t->bs.kc) {
            const int64_t kc = FP_MIN(t->bs.kc, K - pc);
            L->pack_b(L, xn, pc, kc, jc, jn, buf);
            u.kc = kc;
            u.first = pc == 0 || L->accumulate; /* a scatter-add tile starts afresh in every k block */
            u.relu = L->p->relu && pc + kc >= K && !L->accumulate;
            u.ldb = NR;
            for (int64_t ic = r0; ic < r1; ic += mstep) {
                const int64_t ie = FP_MIN(ic + mstep, r1);
                /* a scatter-add's outputs of rows [ic, ie) set up just before their first tile and finished
                 * after their last one, while they are in cache (not for the whole chunk ahead of its GEMM) */
                if (L->init && jc == c0 && pc == 0) L->init(L, yn, ic, ie);
                /* a one-shot call's panels of rows [ic, ie), packed here and read from L2 by the tiles below */
                if (ablock) fp_lowered_kmajor_panels(L->m, K, L->a_raw, ic / MR, FP_CEIL_DIV(ie, MR), ablock);
                if (row_copy) {
                    block_row_copy(t, &u, yn, ic, ie, jc, jn, kc, pc, buf, tile);
                    continue;
                }
                for (int64_t jr = jc; jr < jc + jn; jr += NR) {
                    u.nr = FP_MIN(NR, jc + jn - jr);
                    u.b = buf + (jr - jc) * kc;
                    for (int64_t ir = ic; ir < ie; ir += MR) {
                        /* panel ir/MR starts ir*K floats in (the row block's (ir - ic)*K) */
                        u.mr = FP_MIN(MR, L->m - ir);
                        set_a(L, &u, ir, pc, ablock ? ablock + (ir - ic) * K : L->a ? L->a + ir * K : NULL, wrows);
                        if (L->krange) { /* this panel's part of the one k block */
                            int64_t k0, k1;
                            L->krange(L, ir, &k0, &k1);
                            u.a += k0 * MR, u.b = buf + (jr - jc) * kc + k0 * NR, u.kc = k1 - k0;
                        }
                        u.bias = L->bias && !L->accumulate ? L->bias + ir : NULL;
                        if (L->store) {
                            u.c = tile;
                            u.ldc = NR;
                            uk->run(&u);
                            L->store(L, yn, ir, u.mr, jr, u.nr, tile, NR);
                        } else {
                            u.c = yn + ir * L->n + jr;
                            u.ldc = L->n;
                            uk->run(&u);
                        }
                    }
                }
                if (L->finish && jc + jn >= c1 && pc + kc >= K) L->finish(L, yn, ic, ie);
            }
        }
    }
}

static void chunk(void *ctx, int64_t c, int worker) {
    task *t = (task *)ctx;
    const fp_lowered *L = t->L;
    const int64_t NR = L->uk->nr, MR = L->uk->mr;
    (void)worker;
    float *buf = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * t->bs.kc * t->bs.nc, &t->failed);
    /* the store's tile, or the row copy's MR rows (block_row_copy) */
    float *tile = (float *)fp_scratch_or_fail(1, (int64_t)sizeof(float) * MR * FP_MAX(NR, row_copy_cols(NR)),
                                              &t->failed);
    /* a one-shot call's row block of packed panels (fp_lowered.a_raw) */
    float *ablock = L->a_raw ? (float *)fp_scratch_or_fail(2, (int64_t)sizeof(float) * t->mstep * L->k, &t->failed)
                             : NULL;
    if (!buf || !tile || (L->a_raw && !ablock)) return;
    int64_t lo, hi;
    if (t->by_columns) {
        fp_chunk_range(t->col_tiles * L->p->n, t->nchunks, c, &lo, &hi);
        for (int64_t img = lo / t->col_tiles; img < L->p->n && img * t->col_tiles < hi; img++) {
            const int64_t t0 = FP_MAX(lo, img * t->col_tiles) - img * t->col_tiles;
            const int64_t t1 = FP_MIN(hi, (img + 1) * t->col_tiles) - img * t->col_tiles;
            if (t0 < t1)
                block(t, L->x + img * L->x_image, L->y + img * L->y_image, 0, L->m, t0 * NR, FP_MIN(t1 * NR, L->n),
                      buf, tile, ablock);
        }
    } else {
        const int64_t unit = L->row_unit > 0 ? L->row_unit : MR;
        fp_chunk_range(t->row_tiles, t->nchunks, c, &lo, &hi);
        const int64_t r0 = lo * unit, r1 = FP_MIN(hi * unit, L->m);
        for (int64_t img = 0; img < L->p->n && r0 < r1; img++) {
            block(t, L->x + img * L->x_image, L->y + img * L->y_image, r0, r1, 0, L->n, buf, tile, ablock);
        }
    }
    fp_gemm_fence(); /* a store's non-temporal writes are ordered before the call returns */
}

int fp_lowered_run(const fp_lowered *L) {
    if (L->uk->nr > 64) return FP_ERR_ARGS; /* the stores keep one offset per tile column on the stack */
    if (L->a_raw && !L->store) return FP_ERR_ARGS; /* the row copy (no store) reads packed panels */
    if (L->krange && (!L->single_k_block || !L->store || L->a_raw || L->a_rows)) return FP_ERR_ARGS;
    if (L->a_rows && L->a_raw) return FP_ERR_ARGS;
    if (L->uk->mr > FP_LOWERED_MAX_MR) return FP_ERR_ARGS; /* the row pointers of a_rows live on the stack */
    task t;
    memset(&t, 0, sizeof t);
    t.L = L;
    t.bs = fp_gemm_blocking(L->uk, L->m, L->n, L->k);
    if (L->single_k_block && t.bs.kc < L->k) { /* one k block: the B block is narrowed to keep L2's share */
        const int64_t NR = L->uk->nr;
        t.bs.kc = L->k;
        t.bs.nc = FP_MAX(NR, fp_cache_size(2) / 2 / ((int64_t)sizeof(float) * L->k) / NR * NR);
    }
    /* W, swept once per nc columns, streams from L3 or memory when it outgrows L2 (8 MiB for U-Net's 1024->512
     * up-convolution: 7 sweeps at 28x28 with half of L2): then the B block takes the L3 share, as in the 1x1
     * GEMM's NCHW form.  A W within half of L2 keeps B there too (U-Net 128->64 @128: 0.97x with the L3 share in
     * one alternating run, loaded box). */
    if (L->nc_shared && (int64_t)sizeof(float) * L->m * L->k > fp_cache_size(2) / 2)
        t.bs.nc = fp_gemm_nc_shared(L->uk, t.bs.kc, L->n);
    /* W packed inside the loops pays only in one sweep over the columns: each nc block would pack it again
     * (U-Net 256->128 @64: 8 blocks, 0.95x against packing first) */
    if (L->a_raw && t.bs.nc < L->n) return FP_DECLINED;
    /* row blocks in whole units where init / finish own them (row_unit: whole channels) */
    const int64_t unit = L->row_unit > 0 ? L->row_unit : L->uk->mr;
    t.mstep = L->init || L->finish ? FP_MAX(unit, t.bs.mc / unit * unit) : t.bs.mc;
    t.col_tiles = FP_CEIL_DIV(L->n, L->uk->nr);
    t.row_tiles = FP_CEIL_DIV(L->m, L->row_unit > 0 ? L->row_unit : L->uk->mr);
    int T = fp_threads(L->p);
    const int64_t all_cols = t.col_tiles * L->p->n;
    /* a scatter-add splits rows only: neighbouring columns (input pixels) add to the same outputs */
    t.by_columns = !L->accumulate && (T == 1 || all_cols >= 4 * (int64_t)T || all_cols >= t.row_tiles);
    t.nchunks = fp_chunk_count(t.by_columns ? all_cols : t.row_tiles, T);
    if (t.nchunks < 1) return FP_OK;
    fp_flush_enter(); /* subnormals flushed on this thread, as conv.c does around every kernel */
    fp_pool_run(T, t.nchunks, chunk, &t);
    fp_flush_leave();
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}
