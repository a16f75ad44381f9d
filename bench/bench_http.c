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

#include "harness.h"
#include "proto/handshake.h"
#include "proto/http.h"

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
