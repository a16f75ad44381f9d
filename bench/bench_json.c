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

#include "harness.h"
#include "util/json.h"

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
