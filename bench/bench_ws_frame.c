/* SPDX-License-Identifier: MIT */
/*
 * Throughput of the RFC 6455 frame parser (proto/ws_frame.h), picohttpparser bench.c style:
 * an input of masked client frames is built once, then parsed (and unmasked) again and again.
 *
 *   bench_ws_frame                  times each case (about --seconds S each, default 0.5)
 *   bench_ws_frame --count          a fixed pass count per case, no clock: for callgrind
 *   bench_ws_frame --iterations N   exactly N timed passes (with --count: N counted passes)
 *   bench_ws_frame --case NAME      one case only
 *   bench_ws_frame --list           the case names and their --count pass counts
 *
 * One line per case: case=NAME bytes=B iterations=N seconds=S mbytes_per_s=M, where B is
 * the bytes one pass reads (headers included) and M is B * N / S / 10^6; --count leaves out
 * seconds and mbytes_per_s, so its output is the same on every run. bench/count-instructions
 * turns the --count runs into instructions per byte.
 *
 * The parser unmasks in place, so each pass flips the payloads between masked and plain.
 * That is harmless here (the cost does not depend on the bytes) and saves a copy per pass.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "proto/ws_frame.h"

/* ---------------------------------------------------------------------------------------
 * The cases
 * ------------------------------------------------------------------------------------- */

/* What one read of the I/O layer holds: libuv's suggested 64 KiB. */
#define FILL ((size_t)64 * 1024)
/* Room for one frame bigger than FILL. */
#define INPUT_CAP (2 * FILL)
/* A full TCP segment on Ethernet with timestamps: the reads of a peer that sends steadily. */
#define MSS 1448

static uint8_t input[INPUT_CAP];
static size_t input_len;
static size_t read_size; /* bytes per adieu_ws_frame_parse() input: one read */
static adieu_ws_frame_parser_t parser;

/* Fills the input with masked binary frames of payload bytes, as many as fit in FILL (at
 * least one), each with its own key as a browser sends them, and gives it to the parser reads
 * bytes at a time (0: all of it at once). */
static size_t build(size_t payload, size_t reads)
{
    uint32_t seed = 0x9e3779b9u;
    input_len = 0;
    while (input_len == 0 || input_len + ADIEU_WS_MAX_HEADER + payload <= FILL) {
        uint8_t key[4];
        for (unsigned k = 0; k < 4; k++) {
            seed = seed * 1664525u + 1013904223u;
            key[k] = (uint8_t)(seed >> 24);
        }
        int h =
            adieu_ws_frame_header_masked(input + input_len, ADIEU_WS_OP_BINARY, true, payload, key);
        if (h < 0) {
            abort();
        }
        input_len += (size_t)h;
        for (size_t i = 0; i < payload; i++) {
            input[input_len + i] = (uint8_t)(i * 7 + 3);
        }
        adieu_ws_mask(input + input_len, payload, key, 0);
        input_len += payload;
    }
    read_size = reads == 0 ? input_len : reads;
    adieu_ws_frame_parser_init(&parser, ADIEU_WS_SERVER);
    return input_len;
}

/* Feeds the input read by read, taking every event. Returns the frames plus the payload
 * bytes handed out, or 0 on an error. */
static size_t run_frames(void)
{
    size_t seen = 0;
    for (size_t at = 0; at < input_len; at += read_size) {
        uint8_t *p = input + at;
        size_t left = input_len - at < read_size ? input_len - at : read_size;
        for (;;) {
            size_t used = 0;
            adieu_ws_frame_event_t ev;
            int rc = adieu_ws_frame_parse(&parser, p, left, &used, &ev);
            p += used;
            left -= used;
            if (rc < 0) {
                return 0;
            }
            if (rc == 0) {
                break;
            }
            seen += ev.type == ADIEU_WS_FRAME_HEADER ? 1 : ev.len;
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

/* One frame with a 64-bit length: the unmasking loop alone. */
static size_t setup_64k(void)
{
    return build(64 * 1024, 0);
}

/* 1 KiB frames in segment-sized reads: payloads split, the key phase carried over. */
static size_t setup_1k_mss(void)
{
    return build(1024, MSS);
}

static const bench_case_t cases[] = {
    {"ws_frame_16", 50, setup_16, run_frames},
    {"ws_frame_1k", 400, setup_1k, run_frames},
    {"ws_frame_64k", 1000, setup_64k, run_frames},
    {"ws_frame_1k_mss", 400, setup_1k_mss, run_frames},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
