/* SPDX-License-Identifier: MIT */
/*
 * Throughput of the WebSocket connection core (proto/ws_conn.h), picohttpparser bench.c
 * style: a stream of masked client frames is built once, then run through the whole
 * connection state machine (frame parser, unmasking, fragment rules, UTF-8, pings) again and
 * again, taking every event and all control output as the I/O layer does.
 *
 *   bench_ws_conn                  times each case (about --seconds S each, default 0.5)
 *   bench_ws_conn --count          a fixed pass count per case, no clock: for callgrind
 *   bench_ws_conn --iterations N   exactly N timed passes (with --count: N counted passes)
 *   bench_ws_conn --case NAME      one case only
 *   bench_ws_conn --list           the case names and their --count pass counts
 *
 * One line per case: case=NAME bytes=B iterations=N seconds=S mbytes_per_s=M, where B is
 * the bytes one pass reads (headers included) and M is B * N / S / 10^6; --count leaves out
 * seconds and mbytes_per_s, so its output is the same on every run. bench/count-instructions
 * turns the --count runs into instructions per byte.
 *
 * NOTE: the core unmasks in place, so each pass flips the payloads between masked and plain,
 * and text is validated in both forms on alternate passes. The keys are chosen so that both
 * forms are valid UTF-8 of the same byte classes (ASCII stays ASCII under a key without bit
 * 7; flipping bit 0 alone keeps every lead and continuation byte of the mixed text in its
 * class), so every pass does the same work; the warm-up checks both. The cost of unmasking
 * does not depend on the key.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "proto/ws_conn.h"

/* ---------------------------------------------------------------------------------------
 * The cases
 * ------------------------------------------------------------------------------------- */

/* What one read of the I/O layer holds: libuv's suggested 64 KiB. */
#define INPUT_CAP ((size_t)64 * 1024)
/* adieu-server's default --max-message. */
#define MAX_MESSAGE ((size_t)16 * 1024 * 1024)
#define TEXT_CAP 1024

/* ASCII stays ASCII under these keys (see the NOTE at the top). */
static const uint8_t ascii_key[4] = {0x5a, 0x3c, 0x17, 0x6e};
static const uint8_t utf8_key[4] = {0x01, 0x01, 0x01, 0x01};
static const uint8_t binary_key[4] = {0xd3, 0x9a, 0x41, 0xe7};

static uint8_t input[INPUT_CAP];
static size_t input_len;
static uint8_t text[TEXT_CAP]; /* the payload the messages are cut from */
static adieu_ws_conn_t conn;

/* Fills text with copies of sample, cut at a character boundary and padded with spaces. */
static void make_text(const char *sample)
{
    size_t n = strlen(sample);
    size_t len = 0;
    while (len + n <= TEXT_CAP) {
        memcpy(text + len, sample, n);
        len += n;
    }
    for (size_t i = 0; i < n && len < TEXT_CAP && (uint8_t)sample[i] < 0x80; i++) {
        text[len++] = (uint8_t)sample[i];
    }
    memset(text + len, ' ', TEXT_CAP - len);
}

static void start(void)
{
    input_len = 0;
    adieu_ws_conn_free(&conn);
    adieu_ws_conn_init(&conn, MAX_MESSAGE);
}

/* Appends one whole masked frame of len payload bytes. */
static void put_frame(adieu_ws_opcode_t op, const uint8_t *payload, size_t len,
                      const uint8_t key[4])
{
    if (input_len + ADIEU_WS_MAX_HEADER + len > INPUT_CAP) {
        abort();
    }
    int h = adieu_ws_frame_header_masked(input + input_len, op, true, len, key);
    if (h < 0) {
        abort();
    }
    input_len += (size_t)h;
    memcpy(input + input_len, payload, len);
    adieu_ws_mask(input + input_len, len, key, 0);
    input_len += len;
}

/* Fills the input with copies of one message. */
static size_t fill(adieu_ws_opcode_t op, size_t len, const uint8_t key[4])
{
    start();
    while (input_len + ADIEU_WS_MAX_HEADER + len <= INPUT_CAP) {
        put_frame(op, text, len, key);
    }
    return input_len;
}

/* Runs the input through the connection, taking the control output after every event as the
 * I/O layer does. Returns the events plus their bytes plus the output bytes, or 0 when the
 * connection failed. */
static size_t run_conn(void)
{
    size_t seen = 0;
    uint8_t *p = input;
    size_t left = input_len;
    for (;;) {
        size_t used = 0;
        adieu_ws_event_t ev;
        int rc = adieu_ws_conn_recv(&conn, p, left, &used, &ev);
        p += used;
        left -= used;
        if (rc == 0) {
            break;
        }
        if (ev.type == ADIEU_WS_EV_FAIL) {
            return 0;
        }
        seen += 1 + ev.len;
        const uint8_t *out;
        size_t n;
        while ((n = adieu_ws_conn_output(&conn, &out)) > 0) {
            seen += n;
            adieu_ws_conn_output_consume(&conn, n);
        }
    }
    return seen;
}

/* The demo's kind of text: compact JSON. */
static const char json[] = "{\"amount\":25,\"card\":\"5555555552\",\"terminal\":\"CDE\",\"id\":7}";

static size_t setup_text_16(void)
{
    make_text(json);
    return fill(ADIEU_WS_OP_TEXT, 16, ascii_key);
}

static size_t setup_text_1k(void)
{
    make_text(json);
    return fill(ADIEU_WS_OP_TEXT, 1024, ascii_key);
}

/* Text with characters of every length (no E1, EC, F1 or F4 lead: see the NOTE at the top). */
static size_t setup_text_1k_utf8(void)
{
    make_text("ok 👍 see you at the café — à bientôt! Привет 😀 東京で会いましょう ✓ ");
    return fill(ADIEU_WS_OP_TEXT, 1024, utf8_key);
}

static size_t setup_binary_1k(void)
{
    for (size_t i = 0; i < TEXT_CAP; i++) {
        text[i] = (uint8_t)(i * 7 + 3);
    }
    return fill(ADIEU_WS_OP_BINARY, 1024, binary_key);
}

/* A chat: text messages of mixed sizes, a keep-alive ping after every 16th (answered with a
 * pong, taken from the output). */
static size_t setup_chat(void)
{
    static const size_t sizes[] = {16, 40, 90, 200, 500, 24, 64, 130};
    static const uint8_t ping[8] = "keepaliv";
    make_text(json);
    start();
    for (size_t k = 0; input_len + 2 * ADIEU_WS_MAX_HEADER + 500 + 8 <= INPUT_CAP; k++) {
        put_frame(ADIEU_WS_OP_TEXT, text, sizes[k % 8], ascii_key);
        if (k % 16 == 15) {
            put_frame(ADIEU_WS_OP_PING, ping, sizeof(ping), ascii_key);
        }
    }
    return input_len;
}

static const bench_case_t cases[] = {
    {"ws_conn_text_16", 25, setup_text_16, run_conn},
    {"ws_conn_text_1k", 200, setup_text_1k, run_conn},
    {"ws_conn_text_1k_utf8", 30, setup_text_1k_utf8, run_conn},
    {"ws_conn_binary_1k", 300, setup_binary_1k, run_conn},
    {"ws_conn_chat", 100, setup_chat, run_conn},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
