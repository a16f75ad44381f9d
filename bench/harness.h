/* SPDX-License-Identifier: MIT */
/*
 * The harness shared by every bench/bench_<codec>.c: options (--count, --iterations,
 * --case, --list, --seconds), calibration, the counting allocator that fails a case whose
 * timed pass allocates, and the one-line report per case. See bench_frame.c's header for
 * the command line.
 */
#ifndef ADIEU_BENCH_HARNESS_H
#define ADIEU_BENCH_HARNESS_H

#include <stddef.h>

/* One case: an input built once, and one pass of the codec over it. */
typedef struct {
    const char *name;
    size_t count_iterations; /* passes under --count: enough to swamp setup under callgrind */
    size_t (*setup)(void);   /* builds the input; returns the bytes one pass reads */
    size_t (*run)(void);     /* one pass; returns a tally of what it saw, the same each pass */
} bench_case_t;

/* Runs the cases the command line selects; returns the exit status for main(). */
int bench_main(int argc, char **argv, const bench_case_t *cases, size_t ncases);

#endif /* ADIEU_BENCH_HARNESS_H */
