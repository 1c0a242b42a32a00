/* Flush-to-zero / denormals-are-zero while kernel code runs.
 *
 * Subnormal operands make x86 multiply/FMA units take a microcode assist (tens to hundreds of
 * cycles each), so a layer fed tiny activations can run many times slower.  The kernels therefore
 * run with FTZ+DAZ set (subnormal inputs read as 0, subnormal results written as 0), the same trade
 * PyTorch offers with torch.set_flush_denormal(True).  The control register is per thread, so every
 * thread that runs kernel code sets it and puts the caller's value back afterwards: the Python
 * thread's state is unchanged once a call returns.  The pool's helper threads (csrc/pool.c) run
 * nothing but kernel chunks, so they set the mode once when they start and keep it.
 *
 * The saved value lives in thread-local storage, so each thread pairs its own enter/leave: a
 * thread that never entered does nothing on leave. */
#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define FP_CSR_FLUSH 0x8040u /* MXCSR bit 15 FTZ, bit 6 DAZ */
static inline unsigned read_csr(void) { return _mm_getcsr(); }
static inline void write_csr(unsigned v) { _mm_setcsr(v); }
#elif defined(__aarch64__)
#define FP_CSR_FLUSH (1u << 24) /* FPCR.FZ: flushes subnormal inputs and results */
static inline unsigned read_csr(void) {
    uint64_t v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    return (unsigned)v;
}
static inline void write_csr(unsigned v) {
    uint64_t w = v;
    __asm__ __volatile__("msr fpcr, %0" : : "r"(w));
}
#else
#define FP_CSR_FLUSH 0u
static inline unsigned read_csr(void) { return 0; }
static inline void write_csr(unsigned v) { (void)v; }
#endif

static _Thread_local unsigned saved_csr;
static _Thread_local int flushing;

void fp_flush_enter(void) {
    if (flushing || !FP_CSR_FLUSH) return;
    saved_csr = read_csr();
    write_csr(saved_csr | FP_CSR_FLUSH);
    flushing = 1;
}

void fp_flush_leave(void) {
    if (!flushing) return;
    write_csr(saved_csr);
    flushing = 0;
}
