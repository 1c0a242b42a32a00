/* GNU OpenMP cannot run a thread team in a child of fork(): the child inherits the pool's
 * bookkeeping but not its threads, so the first parallel region waits forever.  A process
 * forked after this library was loaded (multiprocessing's default start method on Linux) therefore
 * runs the kernels on one thread; the parent is unaffected. */
#include "internal.h"

#if defined(_OPENMP) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>

static volatile int g_forked = 0;

static void in_child(void) { g_forked = 1; }

__attribute__((constructor)) static void register_fork_handler(void) { pthread_atfork(NULL, NULL, in_child); }

int fp_forked(void) { return g_forked; }
#else
int fp_forked(void) { return 0; }
#endif
