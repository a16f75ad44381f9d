/* SPDX-License-Identifier: MIT */
/*
 * Throughput of the framed-protocol codec (proto/frame.h), picohttpparser bench.c style: an
 * input of 2-byte-prefixed messages is built once, then parsed again and again.
 *
 *   bench_frame                  times each case (about --seconds S each, default 0.5)
 *   bench_frame --count          a fixed pass count per case, no clock: for callgrind
 *   bench_frame --iterations N   exactly N timed passes (with --count: N counted passes)
 *   bench_frame --case NAME      one case only
 *   bench_frame --list           the case names and their --count pass counts
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

#include "harness.h"
#include "proto/frame.h"

/* ---------------------------------------------------------------------------------------
 * The cases
 * ------------------------------------------------------------------------------------- */

/* What one read of the I/O layer holds: libuv's suggested 64 KiB. */
#define INPUT_CAP ((size_t)64 * 1024)
/* A full TCP segment on Ethernet with timestamps: the reads of a peer that sends steadily. */
#define MSS 1448

static uint8_t input[INPUT_CAP];
static size_t input_len;
static size_t read_size; /* bytes per adieu_frame_parse() input: one read */
static adieu_frame_parser_t parser;

/* Fills the input with as many messages of payload bytes, each behind a 2-byte prefix, as
 * fit, and gives it to the parser reads bytes at a time (0: all of it at once). The payload
 * is the demo's kind of message: compact JSON. */
static size_t build(size_t payload, size_t reads)
{
    static const char text[] =
        "{\"amount\":25,\"card\":\"5555555552\",\"terminal\":\"CDE\",\"id\":7}";
    input_len = 0;
    while (input_len + 2 + payload <= INPUT_CAP) {
        input_len += (size_t)adieu_frame_prefix(input + input_len, 2, payload);
        for (size_t i = 0; i < payload; i++) {
            input[input_len++] = (uint8_t)text[i % (sizeof(text) - 1)];
        }
    }
    read_size = reads == 0 ? input_len : reads;
    adieu_frame_parser_free(&parser);
    adieu_frame_parser_init(&parser, 2, 65535);
    return input_len;
}

/* Feeds the input read by read, taking every message as the I/O layer does (calling again
 * after each, even with nothing left, which releases an assembled message). Returns the
 * messages plus their bytes, or 0 on an error. */
static size_t run_frames(void)
{
    size_t seen = 0;
    for (size_t at = 0; at < input_len; at += read_size) {
        const uint8_t *p = input + at;
        size_t left = input_len - at < read_size ? input_len - at : read_size;
        for (;;) {
            size_t used = 0;
            adieu_frame_msg_t msg;
            int rc = adieu_frame_parse(&parser, p, left, &used, &msg);
            p += used;
            left -= used;
            if (rc < 0) {
                return 0;
            }
            if (rc == 0) {
                break;
            }
            seen += 1 + msg.len;
        }
    }
    return seen;
}

static size_t setup_16(void)
{
    return build(16, 0);
}

static size_t setup_1k(void)
{
    return build(1024, 0);
}

/* 1 KiB messages in segment-sized reads: most straddle two reads and are assembled. */
static size_t setup_1k_mss(void)
{
    return build(1024, MSS);
}

static const bench_case_t cases[] = {
    {"frame_16", 100, setup_16, run_frames},
    {"frame_1k", 2000, setup_1k, run_frames},
    {"frame_1k_mss", 1000, setup_1k_mss, run_frames},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
