/* Per-thread scratch memory that outlives a call.
 *
 * Kernels need per-thread packing buffers of up to about half an L2 per call.  Allocating them on
 * every call means fresh pages from the OS each time (glibc serves such sizes with mmap): page faults
 * on every touch and, on munmap, TLB-shootdown interrupts to every core running a thread of the
 * process.  Measured on a 16-core VM: a 1x1 layer went from 0.27 ms at 8 threads to 4 ms at 16.
 * So each OS thread keeps its buffers (grown when a call needs more) until it exits. */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

#define N_SLOTS 4

typedef struct scratch {
    void *ptr[N_SLOTS];
    int64_t bytes[N_SLOTS];
} scratch;

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void release(void *arg) {
    scratch *s = (scratch *)arg;
    for (int i = 0; i < N_SLOTS; i++) fp_aligned_free(s->ptr[i]);
    free(s);
}

static void make_key(void) { (void)pthread_key_create(&key, release); }

void *fp_scratch(int slot, int64_t bytes) {
    if (slot < 0 || slot >= N_SLOTS) return NULL;
    pthread_once(&key_once, make_key);
    scratch *s = (scratch *)pthread_getspecific(key);
    if (!s) {
        s = (scratch *)calloc(1, sizeof *s);
        if (!s || pthread_setspecific(key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->bytes[slot] < bytes) {
        fp_aligned_free(s->ptr[slot]);
        s->ptr[slot] = fp_aligned_alloc(bytes);
        s->bytes[slot] = s->ptr[slot] ? bytes : 0;
    }
    return s->ptr[slot];
}
