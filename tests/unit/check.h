/* SPDX-License-Identifier: MIT */
/*
 * check.h: the unit tests' assertion helper. Header-only, C11 and POSIX, no dependency.
 *
 *     #include "check.h"
 *
 *     static void parse_empty(void)
 *     {
 *         CHECK_EQ(parse(NULL, 0), 0);
 *     }
 *
 *     int main(void)
 *     {
 *         CHECK_RUN(parse_empty);
 *         return check_done();
 *     }
 *
 * CHECK(cond), CHECK_EQ(a, b) and CHECK_MEM_EQ(a, b, n) evaluate each argument exactly once,
 * count a pass or a failure, print a failure with file:line, the scenario and the values, and
 * yield true when the check held. They never return or jump themselves (STYLE 2.6), so a
 * scenario that cannot go on stops explicitly: `if (!CHECK(p != NULL)) return;`. Unlike
 * assert(), checks are never compiled out, so the tests mean the same in NDEBUG builds.
 *
 * CHECK_RUN(fn) runs one scenario, a `static void fn(void)`, and prints one line with its
 * name and outcome. check_done() prints the totals and returns the exit status for main().
 *
 * guard_copy() places bytes flush against an inaccessible page, so a parser that reads even
 * one byte past its input faults at once instead of silently reading its neighbour's memory
 * (the picohttpparser trick, STYLE 2.7). Release the copy with guard_free().
 */
#ifndef ADIEU_TESTS_CHECK_H
#define ADIEU_TESTS_CHECK_H

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Failures printed in full; later ones are only counted, so that a check failing inside a loop
 * of a million iterations does not bury the first, most useful, report. */
#define CHECK_PRINT_LIMIT 50

static long check__passed;
static long check__failed;
static long check__scenario_failed;
static const char *check__scenario = "main";

/* Counts one check and, on failure, prints "file:line: [scenario] message". */
__attribute__((format(printf, 4, 5))) static inline bool
check__result(bool ok, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        check__passed++;
        return true;
    }
    check__failed++;
    check__scenario_failed++;
    if (check__failed <= CHECK_PRINT_LIMIT) {
        va_list ap;
        fprintf(stderr, "%s:%d: [%s] ", file, line, check__scenario);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    } else if (check__failed == CHECK_PRINT_LIMIT + 1) {
        fprintf(stderr, "(further failures are counted, not printed)\n");
    }
    return false;
}

static inline bool check__eq_i(intmax_t a, intmax_t b, const char *as, const char *bs,
                               const char *file, int line)
{
    return check__result(a == b, file, line, "CHECK_EQ(%s, %s) failed: %jd != %jd", as, bs, a, b);
}

static inline bool check__eq_u(uintmax_t a, uintmax_t b, const char *as, const char *bs,
                               const char *file, int line)
{
    return check__result(a == b, file, line, "CHECK_EQ(%s, %s) failed: %ju != %ju", as, bs, a, b);
}

static inline bool check__mem_eq(const void *a, const void *b, size_t n, const char *as,
                                 const char *bs, const char *file, int line)
{
    const uint8_t *x = a;
    const uint8_t *y = b;
    if (n > 0 && (x == NULL || y == NULL)) {
        return check__result(false, file, line, "CHECK_MEM_EQ(%s, %s, %zu) failed: NULL pointer",
                             as, bs, n);
    }
    size_t i = 0;
    while (i < n && x[i] == y[i]) {
        i++;
    }
    return check__result(i == n, file, line,
                         "CHECK_MEM_EQ(%s, %s, %zu) failed: first difference at offset %zu: "
                         "0x%02x != 0x%02x",
                         as, bs, n, i, i < n ? (unsigned)x[i] : 0u, i < n ? (unsigned)y[i] : 0u);
}

/* Checks that cond is true. */
#define CHECK(cond)                                                                                \
    check__result((cond) ? true : false, __FILE__, __LINE__, "CHECK(%s) failed", #cond)

/* Checks that two integers are equal and prints both values if not. The comparison is
 * unsigned when C's usual arithmetic conversions of a + b give an unsigned type (a size_t
 * against an int, say), signed otherwise, so it agrees with a == b for values in range.
 * Integers only: pass pointers to CHECK(a == b). clang-format 14 would mangle the _Generic
 * association list, hence the markers. */
/* clang-format off */
#define CHECK_EQ(a, b)                                                                             \
    _Generic((a) + (b),                                                                            \
             unsigned int: check__eq_u,                                                            \
             unsigned long: check__eq_u,                                                           \
             unsigned long long: check__eq_u,                                                      \
             default: check__eq_i)((a), (b), #a, #b, __FILE__, __LINE__)
/* clang-format on */

/* Checks that n bytes at a and b are equal and prints the first difference if not. Either
 * pointer may be NULL when n is 0. */
#define CHECK_MEM_EQ(a, b, n) check__mem_eq((a), (b), (n), #a, #b, __FILE__, __LINE__)

/* Runs one scenario and prints "ok name" or "FAIL name (k failed checks)". */
static inline void check__run(void (*fn)(void), const char *name)
{
    check__scenario = name;
    check__scenario_failed = 0;
    fn();
    if (check__scenario_failed == 0) {
        printf("ok   %s\n", name);
    } else {
        printf("FAIL %s (%ld failed checks)\n", name, check__scenario_failed);
    }
    fflush(stdout);
    check__scenario = "main";
}

#define CHECK_RUN(fn) check__run(fn, #fn)

/* The number of failed checks so far, for a scenario that needs to know (a child process
 * reporting through its exit status, say). */
static inline long check_failures(void)
{
    return check__failed;
}

/* Prints the totals; returns EXIT_SUCCESS when every check held, EXIT_FAILURE otherwise. */
static inline int check_done(void)
{
    printf("%ld checks passed, %ld failed\n", check__passed, check__failed);
    fflush(stdout);
    return check__failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static inline size_t check__page_size(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)page : 4096;
}

/* The bytes of a guarded copy of n bytes rounded up to whole pages, not counting the guard. */
static inline size_t check__guard_span(size_t n)
{
    size_t page = check__page_size();
    return (n + page - 1) / page * page;
}

/* Returns a copy of the n bytes at src (src may be NULL when n is 0) whose last byte is the
 * last one before a PROT_NONE page, so any read past the end faults. The copy is writable.
 * Aborts when the pages cannot be mapped: a test cannot go on without them. */
static inline uint8_t *guard_copy(const void *src, size_t n)
{
    size_t span = check__guard_span(n);
    size_t total = span + check__page_size();
    void *base;
#ifdef MAP_ANONYMOUS
    base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
#else
    /* Strict POSIX (no _DEFAULT_SOURCE) hides MAP_ANONYMOUS in glibc; a private mapping of
     * /dev/zero gives the same zero-filled anonymous memory. */
    int fd = open("/dev/zero", O_RDWR);
    base = fd < 0 ? MAP_FAILED : mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (fd >= 0) {
        close(fd);
    }
#endif
    if (base == MAP_FAILED || mprotect((uint8_t *)base + span, check__page_size(), PROT_NONE)) {
        perror("guard_copy");
        abort();
    }
    uint8_t *p = (uint8_t *)base + span - n;
    if (n > 0) {
        memcpy(p, src, n);
    }
    return p;
}

/* Releases a copy made by guard_copy(p, n) with the same n. */
static inline void guard_free(uint8_t *p, size_t n)
{
    if (p != NULL) {
        munmap(p + n - check__guard_span(n), check__guard_span(n) + check__page_size());
    }
}

#endif /* ADIEU_TESTS_CHECK_H */
