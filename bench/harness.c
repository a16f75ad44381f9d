/* SPDX-License-Identifier: MIT */
/* The shared harness of the codec benches: see harness.h. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adieu/alloc.h"
#include "harness.h"

typedef struct {
    bool count;
    bool list;
    long long iterations; /* -1: the case's own count, or calibrated when timing */
    const char *only;
    double seconds;
} bench_opts_t;

/* Allocations made through adieu's allocator: a pass in the timed loop may make none. */
static size_t allocations;

static void *counting_malloc(size_t size)
{
    allocations++;
    return malloc(size);
}

static void *counting_realloc(void *ptr, size_t size)
{
    allocations++;
    return realloc(ptr, size);
}

static void *counting_calloc(size_t count, size_t size)
{
    allocations++;
    return calloc(count, size);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs n passes; false as soon as one saw something other than expect. */
static bool repeat(const bench_case_t *c, size_t n, size_t expect)
{
    for (size_t i = 0; i < n; i++) {
        if (c->run() != expect) {
            return false;
        }
    }
    return true;
}

/* Doubles the pass count until a run lasts an eighth of the target, then runs as many passes
 * as the target allows and returns that run's time. */
static double calibrate(const bench_case_t *c, size_t expect, double target, size_t *n, bool *ok)
{
    size_t trial = 1;
    for (;;) {
        double t0 = now();
        *ok = repeat(c, trial, expect);
        double t = now() - t0;
        if (!*ok || t >= target / 8 || trial > SIZE_MAX / 2) {
            *n = t > 0 ? (size_t)((double)trial * target / t) + 1 : trial;
            break;
        }
        trial *= 2;
    }
    double t0 = now();
    *ok = *ok && repeat(c, *n, expect);
    return now() - t0;
}

static int run_case(const bench_case_t *c, const bench_opts_t *o)
{
    size_t bytes = c->setup();
    /* Two warm-up passes, an even number: the WebSocket benches unmask in place, so a pass
     * turns the payloads from masked to plain and the next one back, and both must see the
     * same. They also let the codec take the storage it keeps before allocations count. */
    size_t expect = c->run();
    if (expect == 0 || c->run() != expect) {
        fprintf(stderr, "case=%s: the codec refused the input\n", c->name);
        return 1;
    }
    size_t before = allocations;
    size_t n = o->iterations >= 0 ? (size_t)o->iterations : c->count_iterations;
    bool ok;
    double secs = 0;
    if (o->count) {
        ok = repeat(c, n, expect);
    } else if (o->iterations >= 0) {
        double t0 = now();
        ok = repeat(c, n, expect);
        secs = now() - t0;
    } else {
        secs = calibrate(c, expect, o->seconds, &n, &ok);
    }
    if (!ok || allocations != before) {
        fprintf(stderr, "case=%s: %s\n", c->name,
                ok ? "allocated in the timed loop" : "a pass saw a different result");
        return 1;
    }
    if (o->count) {
        printf("case=%s bytes=%zu iterations=%zu\n", c->name, bytes, n);
    } else {
        double mbps = secs > 0 ? (double)bytes * (double)n / secs / 1e6 : 0;
        printf("case=%s bytes=%zu iterations=%zu seconds=%.6f mbytes_per_s=%.1f\n", c->name, bytes,
               n, secs, mbps);
    }
    return 0;
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--count] [--iterations N] [--seconds S] [--case NAME] [--list]\n",
            argv0);
    return 2;
}

static int parse_args(int argc, char **argv, bench_opts_t *o)
{
    *o = (bench_opts_t){.iterations = -1, .seconds = 0.5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--count") == 0) {
            o->count = true;
        } else if (strcmp(a, "--list") == 0) {
            o->list = true;
        } else if (strcmp(a, "--case") == 0 && v != NULL) {
            o->only = v;
            i++;
        } else if (strcmp(a, "--iterations") == 0 && v != NULL) {
            o->iterations = strtoll(v, &end, 10);
            if (*v == '\0' || *end != '\0' || o->iterations < 0) {
                return usage(argv[0]);
            }
            i++;
        } else if (strcmp(a, "--seconds") == 0 && v != NULL) {
            o->seconds = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || !(o->seconds > 0)) {
                return usage(argv[0]);
            }
            i++;
        } else {
            return usage(argv[0]);
        }
    }
    return 0;
}

int bench_main(int argc, char **argv, const bench_case_t *cases, size_t ncases)
{
    bench_opts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    if (adieu_replace_allocator(counting_malloc, counting_realloc, counting_calloc, free) != 0) {
        return 1;
    }
    bool found = false;
    for (size_t i = 0; i < ncases && rc == 0; i++) {
        if (o.only != NULL && strcmp(o.only, cases[i].name) != 0) {
            continue;
        }
        found = true;
        if (o.list) {
            printf("%s %zu\n", cases[i].name, cases[i].count_iterations);
        } else {
            rc = run_case(&cases[i], &o);
        }
    }
    if (!found) {
        fprintf(stderr, "%s: no case named %s\n", argv[0], o.only);
        return 2;
    }
    return rc;
}
