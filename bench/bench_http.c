/* SPDX-License-Identifier: MIT */
/*
 * Throughput of the HTTP/1.1 request-head parser (proto/http.h), picohttpparser bench.c
 * style: a browser's WebSocket upgrade request is parsed again and again, one head a pass.
 *
 *   bench_http                  times each case (about --seconds S each, default 0.5)
 *   bench_http --count          a fixed pass count per case, no clock: for callgrind
 *   bench_http --iterations N   exactly N timed passes (with --count: N counted passes)
 *   bench_http --case NAME      one case only
 *   bench_http --list           the case names and their --count pass counts
 *
 * One line per case: case=NAME bytes=B iterations=N seconds=S mbytes_per_s=M, where B is
 * the bytes of the head and M is B * N / S / 10^6; --count leaves out seconds and
 * mbytes_per_s, so its output is the same on every run. bench/count-instructions turns the
 * --count runs into instructions per byte.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adieu/alloc.h"
#include "proto/handshake.h"
#include "proto/http.h"

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

/* What Chrome sends to open a WebSocket, with a session cookie: 14 fields, 600 bytes. */
static const char upgrade[] =
    "GET /chat?room=lobby HTTP/1.1\r\n"
    "Host: chat.example.com:8080\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: https://chat.example.com:8080\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
    "Cookie: _ga=GA1.1.1234567890.1718000000; session=6f1c2a9e4b7d8c3a5e0f1b2c3d4e5f60; "
    "theme=dark\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "\r\n";

/* The default --max-header. */
#define MAX_HEADER 8192
/* A slow sender's step: the bytes each call adds. */
#define STEP 64

static adieu_http_header_t headers[ADIEU_HTTP_MAX_HEADERS];
static size_t step; /* bytes each call adds, the head passed whole so far each time */
static bool classify;

/* Parses the head, in calls of step more bytes each, as the I/O layer feeds it. Returns the
 * head length plus the field count (plus the kind when classifying), or 0 on an error. */
static size_t run_head(void)
{
    size_t n = sizeof(upgrade) - 1;
    adieu_http_parser_t p;
    adieu_http_request_t req;
    size_t head_len = 0;
    adieu_http_parser_init(&p, MAX_HEADER);
    int rc = 0;
    for (size_t held = step; rc == 0; held += step) {
        rc = adieu_http_parse(&p, upgrade, held < n ? held : n, headers, ADIEU_HTTP_MAX_HEADERS,
                              &req, &head_len);
    }
    if (rc != 1) {
        return 0;
    }
    size_t seen = head_len + req.num_headers;
    if (classify) {
        adieu_handshake_opts_t opts = {.draining = false};
        adieu_handshake_t hs;
        seen += (size_t)adieu_handshake_classify(&req, &opts, &hs);
    }
    return seen;
}

static size_t setup(size_t add, bool and_classify)
{
    step = add;
    classify = and_classify;
    return sizeof(upgrade) - 1;
}

/* The usual case: the whole head in one read. */
static size_t setup_upgrade(void)
{
    return setup(sizeof(upgrade) - 1, false);
}

/* The head trickling in: a call for every STEP bytes, each rescanning nothing. */
static size_t setup_upgrade_steps(void)
{
    return setup(STEP, false);
}

/* Parsing and the upgrade checks the I/O layer runs on the result (no SHA-1). */
static size_t setup_upgrade_classify(void)
{
    return setup(sizeof(upgrade) - 1, true);
}

static const bench_case_t cases[] = {
    {"http_upgrade", 2000, setup_upgrade, run_head},
    {"http_upgrade_steps", 2000, setup_upgrade_steps, run_head},
    {"http_upgrade_classify", 2000, setup_upgrade_classify, run_head},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
