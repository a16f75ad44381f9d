/* SPDX-License-Identifier: MIT */
/*
 * Throughput of the UTF-8 validator (proto/utf8.h), picohttpparser bench.c style: texts in
 * a few scripts are built once, then validated again and again.
 *
 *   bench_utf8                  times each case (about --seconds S each, default 0.5)
 *   bench_utf8 --count          a fixed pass count per case, no clock: for callgrind
 *   bench_utf8 --iterations N   exactly N timed passes (with --count: N counted passes)
 *   bench_utf8 --case NAME      one case only
 *   bench_utf8 --list           the case names and their --count pass counts
 *
 * One line per case: case=NAME bytes=B iterations=N seconds=S mbytes_per_s=M, where B is
 * the bytes one pass reads and M is B * N / S / 10^6; --count leaves out seconds and
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
#include "proto/utf8.h"

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

/* A large WebSocket text message: libuv's suggested read size. */
#define INPUT_CAP ((size_t)64 * 1024)
/* A short chat message. */
#define PIECE 16

/* Article 1 of the Universal Declaration of Human Rights, in a few scripts. */
static const char english[] =
    "All human beings are born free and equal in dignity and rights. They are endowed with "
    "reason and conscience and should act towards one another in a spirit of brotherhood. ";
/* Latin script with accents: mostly ASCII, a 2-byte character every few dozen bytes. */
static const char latin[] =
    "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués "
    "de raison et de conscience et doivent agir les uns envers les autres dans un esprit de "
    "fraternité. Alle Menschen sind frei und gleich an Würde und Rechten geboren. ";
/* Cyrillic: 2-byte letters between ASCII spaces and punctuation. */
static const char cyrillic[] =
    "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены "
    "разумом и совестью и должны поступать в отношении друг друга в духе братства. ";
/* Chinese and Japanese: 3-byte characters almost only. */
static const char cjk[] =
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。"
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。";
/* A chat mixing every sequence length, emoji included. */
static const char mixed[] = "ok 👍 see you at the café — à bientôt! Привет 😀 東京で会いましょう ✓ "
                            "price: 12,50 € (naïve estimate) 🎉 ";

static uint8_t input[INPUT_CAP];
static size_t input_len;

/* Fills the input with whole copies of text (so it ends between characters). */
static size_t fill(const char *text)
{
    size_t n = strlen(text);
    input_len = 0;
    while (input_len + n <= INPUT_CAP) {
        memcpy(input + input_len, text, n);
        input_len += n;
    }
    return input_len;
}

/* The whole input as one text. Returns its length when valid, 0 when not. */
static size_t run_whole(void)
{
    return adieu_utf8_valid(input, input_len) ? input_len : 0;
}

/* The input as many short texts of PIECE bytes (ASCII input only: the cuts must fall between
 * characters). Returns the number of valid ones. */
static size_t run_pieces(void)
{
    size_t valid = 0;
    for (size_t at = 0; at + PIECE <= input_len; at += PIECE) {
        valid += adieu_utf8_valid(input + at, PIECE);
    }
    return valid;
}

static size_t setup_ascii(void)
{
    return fill(english);
}

static size_t setup_ascii_16(void)
{
    return fill(english) / PIECE * PIECE;
}

static size_t setup_latin(void)
{
    return fill(latin);
}

static size_t setup_cyrillic(void)
{
    return fill(cyrillic);
}

static size_t setup_cjk(void)
{
    return fill(cjk);
}

static size_t setup_mixed(void)
{
    return fill(mixed);
}

static const bench_case_t cases[] = {
    {"utf8_ascii", 1000, setup_ascii, run_whole},
    {"utf8_ascii_16", 100, setup_ascii_16, run_pieces},
    {"utf8_latin", 200, setup_latin, run_whole},
    {"utf8_cyrillic", 30, setup_cyrillic, run_whole},
    {"utf8_cjk", 30, setup_cjk, run_whole},
    {"utf8_mixed", 50, setup_mixed, run_whole},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
