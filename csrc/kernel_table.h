/* Look-ups in the kernel tables (csrc/kernel_table.c) for the algorithms and their drivers. */
#ifndef FP_KERNEL_TABLE_H
#define FP_KERNEL_TABLE_H
#include "fastpoint.h"

/* The row of `family` to run for dtype f64 at ISA level `isa`: the forced one when set, else the
 * best row whose ISA is at most `isa`; NULL when the family has no such row. */
const fp_kernel *fp_kernel_pick(const char *family, int f64, int isa);
/* Whether any row is forced (the common answer, no, costs two loads); the forced row of `family`
 * and dtype, or NULL. */
int fp_kernel_forcing(void);
const fp_kernel *fp_kernel_forced(const char *family, int f64);
/* Row number of k in fp_kernel_at's numbering (-1: not a row). */
int fp_kernel_index(const fp_kernel *k);

#endif
