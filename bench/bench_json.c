/* SPDX-License-Identifier: MIT */
/*
 * Throughput of the demo app's JSON minifier (util/json.h), picohttpparser bench.c style:
 * messages shaped like /work/shared/data/msgs.json are built once, then minified again and
 * again, each into the same output buffer as the demo app does.
 *
 *   bench_json                  times each case (about --seconds S each, default 0.5)
 *   bench_json --count          a fixed pass count per case, no clock: for callgrind
 *   bench_json --iterations N   exactly N timed passes (with --count: N counted passes)
 *   bench_json --case NAME      one case only
 *   bench_json --list           the case names and their --count pass counts
 *
 * One line per case: case=NAME bytes=B iterations=N seconds=S mbytes_per_s=M, where B is
 * the input bytes one pass minifies and M is B * N / S / 10^6; --count leaves out seconds
 * and mbytes_per_s, so its output is the same on every run. bench/count-instructions turns
 * the --count runs into instructions per byte.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adieu/alloc.h"
#include "util/json.h"

/* ---------------------------------------------------------------------------------------
 * The harness (the same in every bench/bench_<codec>.c)
 * ------------------------------------------------------------------------------------- */

/* One case: an input built once, and one pass of the codec over it. */
typedef struct {
    const char *name;
    size_t count_iterations; /* passes under --count: enough to swamp setup under callgrind */
    size_t (*setup)(void);   /* builds the input; returns the bytes one pass reads */
    size_t (*run)(void);     /* one pass; returns a tally of what it saw, the same each pass */
} bench_case_t;

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

static int bench_main(int argc, char **argv, const bench_case_t *cases, size_t ncases)
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

/* ---------------------------------------------------------------------------------------
 * The cases
 * ------------------------------------------------------------------------------------- */

/* Big enough for a 64 KiB file of messages. */
#define INPUT_CAP ((size_t)64 * 1024)
/* msgs.json holds 23 objects, the three below in turn. */
#define SAMPLE_MSGS 23

/* The objects of msgs.json (amount, card, terminal). */
static const struct {
    int amount;
    const char *card;
    const char *terminal;
} objects[] = {{10, "1213212312", "ABC"}, {25, "5555555552", "CDE"}, {30, "4444444442", "EFG"}};

static uint8_t input[INPUT_CAP];
static size_t input_len;
static size_t msg_off[SAMPLE_MSGS + 1]; /* message k is input[msg_off[k], msg_off[k + 1]) */
static size_t nmsgs;
static adieu_buf_t out;

/* Appends printf-formatted text to the input; aborts if it does not fit (a bug here). */
static void put(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void put(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf((char *)input + input_len, INPUT_CAP - input_len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= INPUT_CAP - input_len) {
        abort();
    }
    input_len += (size_t)n;
}

/* Object k the way adieu-client sends it: jansson's JSON_COMPACT with a fresh "id" last. */
static void put_compact(size_t k)
{
    put("{\"amount\":%d,\"card\":\"%s\",\"terminal\":\"%s\",\"id\":%zu}", objects[k % 3].amount,
        objects[k % 3].card, objects[k % 3].terminal, k + 1);
}

/* Object k as msgs.json writes it, indented by indent spaces (8 more inside). */
static void put_pretty(size_t k, int indent)
{
    put("%*s{\n%*s\"amount\": %d,\n%*s\"card\": \"%s\",\n%*s\"terminal\": \"%s\"\n%*s}", indent, "",
        indent + 8, "", objects[k % 3].amount, indent + 8, "", objects[k % 3].card, indent + 8, "",
        objects[k % 3].terminal, indent, "");
}

static void start(void)
{
    input_len = 0;
    nmsgs = 0;
    msg_off[0] = 0;
}

static void end_msg(void)
{
    msg_off[++nmsgs] = input_len;
}

/* Minifies each message in turn into out. Returns the output bytes, or 0 on an error. */
static size_t run_msgs(void)
{
    size_t seen = 0;
    for (size_t k = 0; k < nmsgs; k++) {
        adieu_json_error_t err;
        adieu_buf_reset(&out);
        if (adieu_json_minify(input + msg_off[k], msg_off[k + 1] - msg_off[k], &out, &err) != 0) {
            return 0;
        }
        seen += adieu_buf_size(&out);
    }
    return seen;
}

/* msgs.json's 23 objects as separate messages, compact, as the framed demo receives them. */
static size_t setup_msg_compact(void)
{
    start();
    for (size_t k = 0; k < SAMPLE_MSGS; k++) {
        put_compact(k);
        end_msg();
    }
    return input_len;
}

/* The same objects sent as the file has them, pretty-printed. */
static size_t setup_msg_pretty(void)
{
    start();
    for (size_t k = 0; k < SAMPLE_MSGS; k++) {
        put_pretty(k, 0);
        end_msg();
    }
    return input_len;
}

/* The whole file of count objects as one message: byte for byte msgs.json for 23. */
static size_t file(size_t count)
{
    start();
    put("[\n");
    for (size_t k = 0; k < count; k++) {
        put_pretty(k, 8);
        put(k + 1 < count ? ",\n" : "\n");
    }
    put("]\n");
    end_msg();
    return input_len;
}

static size_t setup_file(void)
{
    return file(SAMPLE_MSGS);
}

/* A larger file of the same shape, as real users replay: 530 objects, about 64 KiB. */
static size_t setup_file_64k(void)
{
    return file(530);
}

static const bench_case_t cases[] = {
    {"json_msg_compact", 2000, setup_msg_compact, run_msgs},
    {"json_msg_pretty", 1000, setup_msg_pretty, run_msgs},
    {"json_file", 1000, setup_file, run_msgs},
    {"json_file_64k", 40, setup_file_64k, run_msgs},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
