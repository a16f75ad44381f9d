/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/handshake.c: the WebSocket opening handshake (RFC 6455 §4.2) and the
 * answers on the WebSocket port (SPEC section 4, "HTTP answers on the WebSocket port").
 *
 * Each request goes through the parser the way the I/O layer feeds it, whole, one byte at a
 * time and split at every offset, from memory flush against a guard page, and is then
 * classified; every way must give the same answer. A parser error is turned into its answer
 * as the I/O layer does, with adieu_handshake_refuse_parse().
 *
 * Scenarios are named <area>_<case>: accept_*, key_*, upgrade_*, subprotocol_*, refuse_*,
 * plain_*, write_*.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/handshake.h"
#include "proto/http.h"

#include "check.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The header lines of a valid upgrade (RFC 6455 §1.3), to build variants from. */
#define HOST "Host: server.example.com\r\n"
#define UPGRADE "Upgrade: websocket\r\n"
#define CONNECTION "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VERSION "Sec-WebSocket-Version: 13\r\n"
#define GET_CHAT "GET /chat HTTP/1.1\r\n"

static const adieu_handshake_opts_t SERVING = {false, NULL, 0};
static const adieu_handshake_opts_t DRAINING = {true, NULL, 0};

/* ---------------------------------------------------------------------------------------
 * Harness: parse (every split), then classify
 * ------------------------------------------------------------------------------------- */

typedef struct {
    int parse_rc; /* 1, 0 (incomplete) or the parser's error */
    adieu_handshake_t hs;
    adieu_http_request_t req;
    adieu_http_header_t headers[ADIEU_HTTP_MAX_HEADERS];
    uint8_t *buf; /* the bytes of the deciding call, kept while hs.key points into them */
    size_t buf_len;
} answer_t;

static void answer_free(answer_t *a)
{
    guard_free(a->buf, a->buf_len);
    a->buf = NULL;
}

/* Feeds in[0, n) in chunks ending at each of cuts[] (the last is n), as the I/O layer does,
 * and turns the outcome into an answer. */
static void decide(const char *in, const size_t *cuts, size_t ncuts, size_t max_header,
                   const adieu_handshake_opts_t *opts, answer_t *a)
{
    memset(a, 0, sizeof(*a));
    adieu_http_parser_t p;
    adieu_http_parser_init(&p, max_header);
    size_t head_len = 0;
    for (size_t k = 0; k < ncuts; k++) {
        uint8_t *buf = guard_copy(in, cuts[k]);
        a->parse_rc = adieu_http_parse(&p, (const char *)buf, cuts[k], a->headers,
                                       COUNT(a->headers), &a->req, &head_len);
        if (a->parse_rc != 0 || k + 1 == ncuts) {
            a->buf = buf;
            a->buf_len = cuts[k];
            break;
        }
        guard_free(buf, cuts[k]);
    }
    if (a->parse_rc < 0) {
        adieu_handshake_refuse_parse(&p, a->parse_rc, &a->hs);
    } else if (a->parse_rc == 1) {
        adieu_handshake_classify(&a->req, opts, &a->hs);
    }
}

static bool same_answer(const answer_t *x, const answer_t *y)
{
    bool ok = CHECK_EQ(x->parse_rc, y->parse_rc) && CHECK_EQ(x->hs.kind, y->hs.kind) &&
              CHECK_EQ(x->hs.status, y->hs.status) && CHECK(x->hs.detail == y->hs.detail) &&
              CHECK(x->hs.subprotocol == y->hs.subprotocol) &&
              CHECK_EQ(x->hs.key_len, y->hs.key_len);
    if (ok && x->hs.key != NULL) {
        ok = CHECK_EQ(x->hs.key - (const char *)x->buf, y->hs.key - (const char *)y->buf);
    }
    return ok;
}

/* The answer to the whole request in *a; one byte at a time and every two-way split agree. */
static void answer_every_way(const char *in, size_t n, size_t max_header,
                             const adieu_handshake_opts_t *opts, answer_t *a)
{
    size_t whole = n;
    decide(in, &whole, 1, max_header, opts, a);
    size_t *cuts = calloc(n + 1, sizeof(size_t));
    if (cuts == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        cuts[i] = i + 1;
    }
    answer_t other;
    decide(in, cuts, n, max_header, opts, &other);
    if (!same_answer(a, &other)) {
        fprintf(stderr, "  one byte at a time disagrees\n");
    }
    answer_free(&other);
    for (size_t cut = 1; cut < n; cut++) {
        size_t two[2] = {cut, n};
        decide(in, two, 2, max_header, opts, &other);
        bool ok = same_answer(a, &other);
        answer_free(&other);
        if (!ok) {
            fprintf(stderr, "  split at %zu disagrees\n", cut);
            break;
        }
    }
    free(cuts);
}

/* The value of the response header name (exact case, as we write it), or NULL; its length
 * in *len. Counts how many lines carry it in *count. */
static const char *response_header(const char *resp, size_t n, const char *name, size_t *len,
                                   size_t *count)
{
    const char *found = NULL;
    size_t nlen = strlen(name);
    *count = 0;
    const char *line = memchr(resp, '\n', n);
    const char *end = resp + n;
    while (line != NULL && ++line < end && *line != '\r') {
        const char *eol = memchr(line, '\r', (size_t)(end - line));
        if (eol == NULL) {
            break;
        }
        if ((size_t)(eol - line) > nlen + 1 && memcmp(line, name, nlen) == 0 && line[nlen] == ':' &&
            line[nlen + 1] == ' ') {
            if (found == NULL) {
                found = line + nlen + 2;
                *len = (size_t)(eol - found);
            }
            (*count)++;
        }
        line = eol + 1;
    }
    return found;
}

static bool header_is(const char *resp, size_t n, const char *name, const char *value)
{
    size_t len = 0;
    size_t count = 0;
    const char *v = response_header(resp, n, name, &len, &count);
    return v != NULL && count == 1 && len == strlen(value) && memcmp(v, value, len) == 0;
}

static bool header_absent(const char *resp, size_t n, const char *name)
{
    size_t len = 0;
    size_t count = 0;
    return response_header(resp, n, name, &len, &count) == NULL;
}

/* Checks a written refusal: status line, Connection: close, text/plain, a Content-Length
 * equal to the body's length, a body naming the detail; 426 carries what RFC 9110 §15.5.22
 * and RFC 6455 §4.4 ask for. */
static bool check_refusal_bytes(const adieu_handshake_t *hs)
{
    /* One byte more than the writer may use, zeroed, so the response is a C string. */
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX + 1] = {0};
    int n = adieu_handshake_write_refusal(hs, out, sizeof(out) - 1);
    if (!CHECK(n > 0)) {
        return false;
    }
    size_t len = (size_t)n;
    char status_line[64];
    int sl = snprintf(status_line, sizeof(status_line), "HTTP/1.1 %d %s\r\n", hs->status,
                      adieu_http_status_text(hs->status));
    const char *blank = strstr(out, "\r\n\r\n");
    bool ok = CHECK(memcmp(out, status_line, (size_t)sl) == 0) && CHECK(blank != NULL);
    if (!ok) {
        return false;
    }
    const char *body = blank + 4;
    size_t body_len = len - (size_t)(body - out);
    char cl[32];
    snprintf(cl, sizeof(cl), "%zu", body_len);
    ok = CHECK(header_is(out, len, "Content-Length", cl)) &&
         CHECK(header_is(out, len, "Content-Type", "text/plain; charset=utf-8")) &&
         CHECK(body_len > strlen(hs->detail)) &&
         CHECK(memcmp(body + body_len - strlen(hs->detail) - 1, hs->detail, strlen(hs->detail)) ==
               0);
    /* "Connection: close" is the first Connection line; a 426 adds "Upgrade" on a second. */
    size_t clen = 0;
    size_t ccount = 0;
    const char *conn = response_header(out, len, "Connection", &clen, &ccount);
    ok = CHECK(conn != NULL && clen == 5 && memcmp(conn, "close", 5) == 0) && ok;
    if (hs->status == 426) {
        ok = CHECK(header_is(out, len, "Upgrade", "websocket")) &&
             CHECK(header_is(out, len, "Sec-WebSocket-Version", "13")) && CHECK_EQ(ccount, 2) &&
             CHECK(strstr(out, "\r\nConnection: Upgrade\r\n") != NULL) && ok;
    } else {
        ok = CHECK(header_absent(out, len, "Upgrade")) && CHECK_EQ(ccount, 1) && ok;
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------
 * Sec-WebSocket-Accept and Sec-WebSocket-Key
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §1.3 and §4.2.2: the example key "dGhlIHNhbXBsZSBub25jZQ==" gives
 * "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=". */
static void accept_rfc_example(void)
{
    char out[ADIEU_HANDSHAKE_ACCEPT_LEN + 1];
    memset(out, 'x', sizeof(out));
    CHECK_EQ(adieu_handshake_accept_key(S("dGhlIHNhbXBsZSBub25jZQ=="), out), 0);
    CHECK_MEM_EQ(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ADIEU_HANDSHAKE_ACCEPT_LEN + 1);
}

/* Further pairs, computed independently (Python hashlib + base64). */
static void accept_other_keys(void)
{
    static const struct {
        const char *key;
        const char *accept;
    } cases[] = {
        {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
        {"AQIDBAUGBwgJCgsMDQ4PEA==", "C/0nmHhBztSRGR1CwL6Tf4ZjwpY="},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char out[ADIEU_HANDSHAKE_ACCEPT_LEN + 1];
        CHECK_EQ(adieu_handshake_accept_key(cases[i].key, strlen(cases[i].key), out), 0);
        CHECK(strcmp(out, cases[i].accept) == 0);
    }
    /* The key is hashed as sent: a different case is a different key. */
    char out[ADIEU_HANDSHAKE_ACCEPT_LEN + 1];
    CHECK_EQ(adieu_handshake_accept_key(S("DGHLIHNHBXBSZSBUB25JZQ=="), out), 0);
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0);
    char big[65];
    memset(big, 'A', sizeof(big));
    CHECK_EQ(adieu_handshake_accept_key(big, 65, out), ADIEU_EINVAL);
    CHECK_EQ(adieu_handshake_accept_key(big, 64, out), 0);
}

static void key_validity(void)
{
    static const struct {
        const char *key;
        bool valid;
    } cases[] = {
        {"dGhlIHNhbXBsZSBub25jZQ==", true},
        {"AQIDBAUGBwgJCgsMDQ4PEA==", true},
        {"AAAAAAAAAAAAAAAAAAAAAA==", true},
        {"/////////////////////w==", true},
        {"++++++++++++++++++++++==", false}, /* last character has padding bits set */
        {"dGhlIHNhbXBsZSBub25jZR==", false}, /* same */
        {"dGhlIHNhbXBsZSBub25jZQ=", false},  /* padding cut */
        {"dGhlIHNhbXBsZSBub25jZQ", false},   /* no padding */
        {"dGhlIHNhbXBsZSBub25jZQ===", false},
        {"dGhlIHNhbXBsZSBub25jZQ==\n", false},
        {"dGhlIHNhbXBsZSBub25j", false},         /* 15 bytes */
        {"dGhlIHNhbXBsZSBub25jZSBub25j", false}, /* 21 bytes */
        {"dGhlIHNhbXBsZSBub25jZQAA", false},     /* 18 bytes, no padding */
        {"dGhlIHNhbXBsZSBub25jZQ-_", false},     /* URL-safe alphabet */
        {"dGhlIHNhbXBsZSBub25j-Q==", false},
        {"dGhlIHNhbXBsZSBub25j_Q==", false},
        {"dGhlIHNhbXBs=SBub25jZQ==", false}, /* padding inside */
        {"dGhlIHNhbXBs ZSBub25jZQ=", false},
        {"dGhlIHNhbXBsZSBub25jZQ.=", false},
        {"", false},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        if (!CHECK_EQ(adieu_handshake_key_valid(cases[i].key, strlen(cases[i].key)),
                      cases[i].valid)) {
            fprintf(stderr, "  key \"%s\"\n", cases[i].key);
        }
    }
    CHECK(!adieu_handshake_key_valid(NULL, 0));
    /* An embedded NUL is not an alphabet character. */
    CHECK(!adieu_handshake_key_valid(S("dGhlIHNhbXBsZSBub25j\0Q==")));
}

/* ---------------------------------------------------------------------------------------
 * Valid upgrades
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §1.3: the example request and, with "chat" supported, the example response. */
static void upgrade_rfc_example(void)
{
    static const char req[] = GET_CHAT HOST UPGRADE CONNECTION KEY
        "Origin: http://example.com\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n" VERSION "\r\n";
    static const char *const protos[] = {"chat"};
    adieu_handshake_opts_t opts = {false, protos, 1};
    answer_t a;
    answer_every_way(S(req), 8192, &opts, &a);
    CHECK_EQ(a.hs.kind, ADIEU_HS_UPGRADE);
    CHECK_EQ(a.hs.status, 101);
    CHECK(strcmp(a.hs.detail, "upgrade") == 0);
    /* The key is read in place, in the caller's buffer. */
    CHECK(a.hs.key == (const char *)a.buf + (strstr(req, "dGhl") - req));
    CHECK_EQ(a.hs.key_len, 24);
    CHECK(a.hs.subprotocol == protos[0]);
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    int n = adieu_handshake_write_101(&a.hs, out, sizeof(out));
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Protocol: chat\r\n"
                               "\r\n";
    CHECK_EQ(n, (int)sizeof(want) - 1);
    CHECK_MEM_EQ(out, want, sizeof(want) - 1);
    answer_free(&a);
}

/* Without a selected subprotocol the 101 has no Sec-WebSocket-Protocol at all. */
static void upgrade_without_subprotocol(void)
{
    static const char req[] = GET_CHAT HOST UPGRADE CONNECTION KEY
        "Sec-WebSocket-Protocol: chat, superchat\r\n" VERSION "\r\n";
    answer_t a;
    answer_every_way(S(req), 8192, &SERVING, &a);
    CHECK_EQ(a.hs.kind, ADIEU_HS_UPGRADE);
    CHECK(a.hs.subprotocol == NULL);
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    int n = adieu_handshake_write_101(&a.hs, out, sizeof(out));
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "\r\n";
    CHECK_EQ(n, (int)sizeof(want) - 1);
    CHECK_MEM_EQ(out, want, sizeof(want) - 1);
    answer_free(&a);
}

/* SPEC P2: an extension offer is declined by leaving it out of the response. */
static void upgrade_declines_extensions(void)
{
    static const char req[] = GET_CHAT HOST UPGRADE CONNECTION KEY VERSION
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    answer_t a;
    answer_every_way(S(req), 8192, &SERVING, &a);
    CHECK_EQ(a.hs.kind, ADIEU_HS_UPGRADE);
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    int n = adieu_handshake_write_101(&a.hs, out, sizeof(out));
    CHECK(n > 0);
    CHECK(header_absent(out, (size_t)n, "Sec-WebSocket-Extensions"));
    CHECK(header_absent(out, (size_t)n, "Content-Length"));
    answer_free(&a);
}

/* Variants that are all valid upgrades: header order, case of names and tokens, absolute
 * form, a higher HTTP/1 minor version, a query, an explicit zero Content-Length. */
static void upgrade_variants(void)
{
    static const char *const reqs[] = {
        GET_CHAT VERSION KEY CONNECTION UPGRADE HOST "\r\n",
        "GET /chat HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: UPGRADE\r\n"
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n",
        "GET http://server.example.com/chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION
        "\r\n",
        "GET /chat HTTP/1.9\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n",
        "GET /chat?room=1&x=%20 HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n",
        "GET / HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n",
        "GET /healthz/ HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n",
        GET_CHAT HOST UPGRADE CONNECTION KEY VERSION "Content-Length: 0\r\n\r\n",
        GET_CHAT "Host: 127.0.0.1:9000\r\n" UPGRADE CONNECTION KEY VERSION "\r\n",
        GET_CHAT "Host: [::1]:9000\r\n" UPGRADE CONNECTION KEY VERSION "\r\n",
        GET_CHAT HOST "Upgrade: h2c, websocket\r\n" CONNECTION KEY VERSION "\r\n",
        GET_CHAT HOST "Upgrade: h2c\r\nUpgrade: websocket\r\n" CONNECTION KEY VERSION "\r\n",
        GET_CHAT HOST UPGRADE "Connection: keep-alive, Upgrade\r\n" KEY VERSION "\r\n",
        GET_CHAT HOST UPGRADE CONNECTION "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n"
                                         "Sec-WebSocket-Version:\t13\t\r\n\r\n",
    };
    for (size_t i = 0; i < COUNT(reqs); i++) {
        answer_t a;
        answer_every_way(reqs[i], strlen(reqs[i]), 8192, &SERVING, &a);
        if (!CHECK_EQ(a.hs.kind, ADIEU_HS_UPGRADE) || !CHECK_EQ(a.hs.key_len, 24)) {
            fprintf(stderr, "  request %zu: %s\n", i, a.hs.detail);
        }
        answer_free(&a);
    }
}

/* ---------------------------------------------------------------------------------------
 * Subprotocol selection: the first in the client's list that the server supports
 * ------------------------------------------------------------------------------------- */

static const char *select_for(const char *fields, const char *const *protos, size_t n)
{
    char req[512];
    int len =
        snprintf(req, sizeof(req), GET_CHAT HOST UPGRADE CONNECTION KEY VERSION "%s\r\n", fields);
    adieu_handshake_opts_t opts = {false, protos, n};
    answer_t a;
    answer_every_way(req, (size_t)len, 8192, &opts, &a);
    CHECK_EQ(a.hs.kind, ADIEU_HS_UPGRADE);
    const char *got = a.hs.subprotocol;
    if (got != NULL) {
        CHECK_EQ(a.hs.subprotocol_len, strlen(got));
    }
    answer_free(&a);
    return got;
}

static void subprotocol_client_order(void)
{
    static const char *const both[] = {"superchat", "chat"};
    /* The client's order decides, not the server's. */
    CHECK(select_for("Sec-WebSocket-Protocol: chat, superchat\r\n", both, 2) == both[1]);
    CHECK(select_for("Sec-WebSocket-Protocol: superchat, chat\r\n", both, 2) == both[0]);
    static const char *const super[] = {"superchat"};
    CHECK(select_for("Sec-WebSocket-Protocol: chat, superchat\r\n", super, 1) == super[0]);
    static const char *const other[] = {"other"};
    CHECK(select_for("Sec-WebSocket-Protocol: chat, superchat\r\n", other, 1) == NULL);
    CHECK(select_for("", both, 2) == NULL);
    CHECK(select_for("Sec-WebSocket-Protocol: chat\r\n", NULL, 0) == NULL);
}

static void subprotocol_repeated_fields(void)
{
    static const char *const cb[] = {"c", "b"};
    /* RFC 6455 §11.3.4: repeated fields are one list, in order. */
    CHECK(select_for("Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b, c\r\n", cb, 2) ==
          cb[1]);
    CHECK(select_for("Sec-WebSocket-Protocol: c\r\nSec-WebSocket-Protocol: b\r\n", cb, 2) == cb[0]);
    CHECK(select_for("sec-websocket-protocol: x\r\nSEC-WEBSOCKET-PROTOCOL: , ,b ,\r\n", cb, 2) ==
          cb[1]);
}

/* Names compare exactly: no case folding, no prefixes. */
static void subprotocol_exact_match(void)
{
    static const char *const chat[] = {"chat"};
    CHECK(select_for("Sec-WebSocket-Protocol: Chat, CHAT\r\n", chat, 1) == NULL);
    CHECK(select_for("Sec-WebSocket-Protocol: chatty, cha\r\n", chat, 1) == NULL);
    CHECK(select_for("Sec-WebSocket-Protocol: superchat\r\n", chat, 1) == NULL);
    CHECK(select_for("Sec-WebSocket-Protocol:  \tchat\t \r\n", chat, 1) == chat[0]);
    static const char *const v[] = {"v2.json", "v1.json"};
    CHECK(select_for("Sec-WebSocket-Protocol: v3.json,v1.json,v2.json\r\n", v, 2) == v[1]);
}

/* ---------------------------------------------------------------------------------------
 * Refusals: every class with its exact status
 * ------------------------------------------------------------------------------------- */

typedef struct {
    const char *req;
    bool draining;
    int status;
    const char *detail;
} refusal_case_t;

static const refusal_case_t REFUSALS[] = {
    /* Any other method (RFC 6455 §4.2.1 item 1; methods are case-sensitive). */
    {"POST /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", false, 400,
     "method not GET"},
    {"get /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", false, 400,
     "method not GET"},
    {"HEAD /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", false, 400,
     "method not GET"},
    {"CONNECT server.example.com:80 HTTP/1.1\r\n" HOST "\r\n", false, 400, "bad request-target"},
    {"OPTIONS * HTTP/1.1\r\n" HOST "\r\n", false, 400, "bad request-target"},
    {"GET * HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", false, 400,
     "bad request-target"},
    /* HTTP/1.0. */
    {"GET /chat HTTP/1.0\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", false, 400,
     "HTTP/1.0 request"},
    {"GET / HTTP/1.0\r\n\r\n", false, 400, "HTTP/1.0 request"},
    /* Host (RFC 9112 §3.2). */
    {GET_CHAT UPGRADE CONNECTION KEY VERSION "\r\n", false, 400, "missing Host"},
    {GET_CHAT HOST HOST UPGRADE CONNECTION KEY VERSION "\r\n", false, 400, "duplicate Host"},
    {GET_CHAT "Host:\r\n" UPGRADE CONNECTION KEY VERSION "\r\n", false, 400, "empty Host"},
    {GET_CHAT "Host: a b\r\n" UPGRADE CONNECTION KEY VERSION "\r\n", false, 400, "malformed Host"},
    {GET_CHAT "Host: a,b\r\n" UPGRADE CONNECTION KEY VERSION "\r\n", false, 400, "malformed Host"},
    {GET_CHAT "Host: h/x\r\n" UPGRADE CONNECTION KEY VERSION "\r\n", false, 400, "malformed Host"},
    {GET_CHAT "Host: u@h\r\n" UPGRADE CONNECTION KEY VERSION "\r\n", false, 400, "malformed Host"},
    /* A body. */
    {GET_CHAT HOST UPGRADE CONNECTION KEY VERSION "Content-Length: 5\r\n\r\n", false, 400,
     "request body not allowed"},
    {GET_CHAT HOST UPGRADE CONNECTION KEY VERSION "Transfer-Encoding: chunked\r\n\r\n", false, 400,
     "request body not allowed"},
    /* A plain GET without Upgrade: 426. */
    {"GET / HTTP/1.1\r\n" HOST "\r\n", false, 426, "no Upgrade header"},
    {GET_CHAT HOST CONNECTION KEY VERSION "\r\n", false, 426, "no Upgrade header"},
    /* Upgrade without the websocket token. */
    {GET_CHAT HOST "Upgrade: h2c\r\n" CONNECTION KEY VERSION "\r\n", false, 400,
     "Upgrade without websocket"},
    {GET_CHAT HOST "Upgrade: websocket/13\r\n" CONNECTION KEY VERSION "\r\n", false, 400,
     "Upgrade without websocket"},
    {GET_CHAT HOST "Upgrade: web socket\r\n" CONNECTION KEY VERSION "\r\n", false, 400,
     "Upgrade without websocket"},
    {GET_CHAT HOST "Upgrade:\r\n" CONNECTION KEY VERSION "\r\n", false, 400,
     "Upgrade without websocket"},
    /* Connection without the upgrade token. */
    {GET_CHAT HOST UPGRADE KEY VERSION "\r\n", false, 400, "Connection without upgrade"},
    {GET_CHAT HOST UPGRADE "Connection: keep-alive\r\n" KEY VERSION "\r\n", false, 400,
     "Connection without upgrade"},
    {GET_CHAT HOST UPGRADE "Connection: websocket\r\n" KEY VERSION "\r\n", false, 400,
     "Connection without upgrade"},
    /* Sec-WebSocket-Version wrong or missing: 426. */
    {GET_CHAT HOST UPGRADE CONNECTION KEY "\r\n", false, 426, "missing Sec-WebSocket-Version"},
    {GET_CHAT HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 8\r\n\r\n", false, 426,
     "unsupported Sec-WebSocket-Version"},
    {GET_CHAT HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n", false, 426,
     "unsupported Sec-WebSocket-Version"},
    {GET_CHAT HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 013\r\n\r\n", false, 426,
     "unsupported Sec-WebSocket-Version"},
    {GET_CHAT HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version:\r\n\r\n", false, 426,
     "unsupported Sec-WebSocket-Version"},
    {GET_CHAT HOST UPGRADE CONNECTION KEY VERSION VERSION "\r\n", false, 426,
     "duplicate Sec-WebSocket-Version"},
    /* Sec-WebSocket-Key missing or bad. */
    {GET_CHAT HOST UPGRADE CONNECTION VERSION "\r\n", false, 400, "missing Sec-WebSocket-Key"},
    {GET_CHAT HOST UPGRADE CONNECTION "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n" VERSION "\r\n",
     false, 400, "bad Sec-WebSocket-Key"},
    {GET_CHAT HOST UPGRADE CONNECTION "Sec-WebSocket-Key:\r\n" VERSION "\r\n", false, 400,
     "bad Sec-WebSocket-Key"},
    {GET_CHAT HOST UPGRADE CONNECTION KEY KEY VERSION "\r\n", false, 400,
     "duplicate Sec-WebSocket-Key"},
    /* During the drain, every upgrade request that would have been accepted: 503. */
    {GET_CHAT HOST UPGRADE CONNECTION KEY VERSION "\r\n", true, 503, "draining"},
    /* A wrong request keeps its own answer during the drain. */
    {GET_CHAT HOST UPGRADE CONNECTION VERSION "\r\n", true, 400, "missing Sec-WebSocket-Key"},
    {"GET / HTTP/1.1\r\n" HOST "\r\n", true, 426, "no Upgrade header"},
    /* Plain paths: only GET, and HTTP/1.1 needs its Host. */
    {"POST /healthz HTTP/1.1\r\n" HOST "\r\n", false, 400, "method not GET"},
    {"HEAD /metrics HTTP/1.1\r\n" HOST "\r\n", false, 400, "method not GET"},
    {"GET /healthz HTTP/1.1\r\n\r\n", false, 400, "missing Host"},
    {"GET /metrics HTTP/1.1\r\n" HOST HOST "\r\n", true, 400, "duplicate Host"},
};

static void refuse_every_class(void)
{
    for (size_t i = 0; i < COUNT(REFUSALS); i++) {
        const refusal_case_t *c = &REFUSALS[i];
        answer_t a;
        answer_every_way(c->req, strlen(c->req), 8192, c->draining ? &DRAINING : &SERVING, &a);
        bool ok = CHECK_EQ(a.parse_rc, 1) && CHECK_EQ(a.hs.kind, ADIEU_HS_REFUSE) &&
                  CHECK_EQ(a.hs.status, c->status) && CHECK(strcmp(a.hs.detail, c->detail) == 0);
        ok =
            ok && CHECK(a.hs.key == NULL && a.hs.subprotocol == NULL) && check_refusal_bytes(&a.hs);
        if (!ok) {
            fprintf(stderr, "  case %zu: got %d \"%s\" for:\n%s", i, a.hs.status,
                    a.hs.detail != NULL ? a.hs.detail : "(null)", c->req);
        }
        answer_free(&a);
    }
}

/* Connection tokens in every case and spacing decide between 101 and 400. */
static void refuse_connection_tokens(void)
{
    static const struct {
        const char *field;
        int status;
    } cases[] = {
        {"Connection: Upgrade\r\n", 101},
        {"Connection: upgrade\r\n", 101},
        {"Connection: UPGRADE\r\n", 101},
        {"Connection: uPGRADe\r\n", 101},
        {"Connection: keep-alive, Upgrade\r\n", 101},
        {"Connection: keep-alive,Upgrade\r\n", 101},
        {"Connection: Upgrade,keep-alive\r\n", 101},
        {"Connection:    keep-alive   ,   Upgrade   \r\n", 101},
        {"Connection:\tkeep-alive\t,\tupgrade\t\r\n", 101},
        {"Connection: ,Upgrade,\r\n", 101},
        {"Connection: keep-alive, , upgrade\r\n", 101},
        {"connection: keep-alive\r\nCONNECTION: upgrade\r\n", 101},
        {"Connection: keep-alive\r\n", 400},
        {"Connection: close\r\n", 400},
        {"Connection: Upgrades\r\n", 400},
        {"Connection: Upgrade-Insecure-Requests\r\n", 400},
        {"Connection: keep-alive Upgrade\r\n", 400},
        {"Connection: keep-alive;Upgrade\r\n", 400},
        {"Connection: \"Upgrade\"\r\n", 400},
        {"Connection:\r\n", 400},
        {"X-Connection: Upgrade\r\n", 400},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char req[512];
        int n = snprintf(req, sizeof(req), GET_CHAT HOST UPGRADE "%s" KEY VERSION "\r\n",
                         cases[i].field);
        answer_t a;
        answer_every_way(req, (size_t)n, 8192, &SERVING, &a);
        if (!CHECK_EQ(a.hs.status, cases[i].status)) {
            fprintf(stderr, "  field: %s", cases[i].field);
        }
        answer_free(&a);
    }
}

static void refuse_upgrade_tokens(void)
{
    static const struct {
        const char *field;
        int status;
    } cases[] = {
        {"Upgrade: websocket\r\n", 101},
        {"Upgrade: WebSocket\r\n", 101},
        {"Upgrade: WEBSOCKET\r\n", 101},
        {"Upgrade:  websocket  \r\n", 101},
        {"Upgrade: h2c, websocket\r\n", 101},
        {"Upgrade: websocket,h2c\r\n", 101},
        {"upgrade: h2c\r\nUPGRADE: websocket\r\n", 101},
        {"Upgrade: websockets\r\n", 400},
        {"Upgrade: web-socket\r\n", 400},
        {"Upgrade: h2c\r\n", 400},
        {"Upgrade: , ,\r\n", 400},
        {"", 426},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char req[512];
        int n = snprintf(req, sizeof(req), GET_CHAT HOST "%s" CONNECTION KEY VERSION "\r\n",
                         cases[i].field);
        answer_t a;
        answer_every_way(req, (size_t)n, 8192, &SERVING, &a);
        if (!CHECK_EQ(a.hs.status, cases[i].status)) {
            fprintf(stderr, "  field: %s", cases[i].field);
        }
        answer_free(&a);
    }
}

/* Parser errors: a head over --max-header or with too many fields is 431, a malformed one
 * 400; both carry the parser's detail. */
static void refuse_parse_errors(void)
{
    static const char req[] = GET_CHAT HOST UPGRADE CONNECTION KEY VERSION "\r\n";
    size_t n = sizeof(req) - 1;
    answer_t a;
    answer_every_way(req, n, n, &SERVING, &a);
    CHECK_EQ(a.hs.kind, ADIEU_HS_UPGRADE); /* exactly at the limit */
    answer_free(&a);
    answer_every_way(req, n, n - 1, &SERVING, &a);
    CHECK_EQ(a.parse_rc, ADIEU_ETOOBIG);
    CHECK_EQ(a.hs.kind, ADIEU_HS_REFUSE);
    CHECK_EQ(a.hs.status, 431);
    CHECK(strcmp(a.hs.detail, "header section over max_header") == 0);
    check_refusal_bytes(&a.hs);
    answer_free(&a);
    answer_every_way(S("GET /chat HTTP/1.1\r\nHost: x\nUpgrade: websocket\r\n\r\n"), 8192, &SERVING,
                     &a);
    CHECK_EQ(a.parse_rc, ADIEU_EPROTO);
    CHECK_EQ(a.hs.status, 400);
    CHECK(strcmp(a.hs.detail, "bare LF") == 0);
    check_refusal_bytes(&a.hs);
    answer_free(&a);
    answer_every_way(S("GET /chat HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), 8192, &SERVING, &a);
    CHECK_EQ(a.hs.status, 400);
    answer_free(&a);
    /* Too many fields. */
    char many[8192];
    size_t w = (size_t)snprintf(many, sizeof(many), GET_CHAT);
    for (int i = 0; i <= ADIEU_HTTP_MAX_HEADERS; i++) {
        w += (size_t)snprintf(many + w, sizeof(many) - w, "X-%d: %d\r\n", i, i);
    }
    w += (size_t)snprintf(many + w, sizeof(many) - w, "\r\n");
    size_t whole = w;
    decide(many, &whole, 1, 8192, &SERVING, &a);
    CHECK_EQ(a.hs.status, 431);
    CHECK(strcmp(a.hs.detail, "too many header fields") == 0);
    answer_free(&a);
}

/* ---------------------------------------------------------------------------------------
 * Plain HTTP: /healthz and /metrics
 * ------------------------------------------------------------------------------------- */

static void plain_routes(void)
{
    static const struct {
        const char *req;
        bool draining;
        adieu_hs_kind_t kind;
        int status;
    } cases[] = {
        {"GET /healthz HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_HEALTHZ, 200},
        {"GET /healthz HTTP/1.1\r\n" HOST "\r\n", true, ADIEU_HS_HEALTHZ, 503},
        {"GET /metrics HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_METRICS, 200},
        {"GET /metrics HTTP/1.1\r\n" HOST "\r\n", true, ADIEU_HS_METRICS, 200},
        {"GET /healthz?probe=1 HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_HEALTHZ, 200},
        {"GET http://h:9000/metrics HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_METRICS, 200},
        {"GET /healthz HTTP/1.0\r\n\r\n", false, ADIEU_HS_HEALTHZ, 200},
        /* An upgrade on a plain path is not one: the path decides. */
        {"GET /healthz HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", false,
         ADIEU_HS_HEALTHZ, 200},
        /* Paths compare exactly. */
        {"GET /Healthz HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_REFUSE, 426},
        {"GET /healthz/ HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_REFUSE, 426},
        {"GET /metricsx HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_REFUSE, 426},
        {"GET /%68ealthz HTTP/1.1\r\n" HOST "\r\n", false, ADIEU_HS_REFUSE, 426},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        answer_t a;
        answer_every_way(cases[i].req, strlen(cases[i].req), 8192,
                         cases[i].draining ? &DRAINING : &SERVING, &a);
        bool ok = CHECK_EQ(a.hs.kind, cases[i].kind) && CHECK_EQ(a.hs.status, cases[i].status);
        if (!ok) {
            fprintf(stderr, "  case %zu: %s", i, cases[i].req);
        }
        answer_free(&a);
    }
}

/* ---------------------------------------------------------------------------------------
 * Writers
 * ------------------------------------------------------------------------------------- */

/* Writes with exactly the room needed, from memory flush against a guard page, then checks
 * that every smaller room is refused without a write past it. */
typedef int (*writer_fn)(const void *arg, char *out, size_t cap);

static void check_written(writer_fn fn, const void *arg, const char *want)
{
    size_t n = strlen(want);
    uint8_t *room = guard_copy(want, n);
    memset(room, 0, n);
    CHECK_EQ(fn(arg, (char *)room, n), (int)n);
    CHECK_MEM_EQ(room, want, n);
    for (size_t cap = 0; cap < n; cap++) {
        CHECK_EQ(fn(arg, (char *)room + n - cap, cap), ADIEU_ETOOBIG);
    }
    guard_free(room, n);
}

static int write_healthz_ok(const void *arg, char *out, size_t cap)
{
    (void)arg;
    return adieu_handshake_write_healthz(false, out, cap);
}

static int write_healthz_draining(const void *arg, char *out, size_t cap)
{
    (void)arg;
    return adieu_handshake_write_healthz(true, out, cap);
}

static int write_metrics(const void *arg, char *out, size_t cap)
{
    return adieu_handshake_write_metrics(arg, strlen(arg), out, cap);
}

static int write_metrics_head(const void *arg, char *out, size_t cap)
{
    return adieu_handshake_write_metrics_head(strlen(arg), out, cap);
}

static int write_101(const void *arg, char *out, size_t cap)
{
    return adieu_handshake_write_101(arg, out, cap);
}

static int write_refusal(const void *arg, char *out, size_t cap)
{
    return adieu_handshake_write_refusal(arg, out, cap);
}

static void write_healthz(void)
{
    check_written(write_healthz_ok, NULL,
                  "HTTP/1.1 200 OK\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: 2\r\n"
                  "Connection: close\r\n"
                  "\r\n"
                  "ok");
    check_written(write_healthz_draining, NULL,
                  "HTTP/1.1 503 Service Unavailable\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: 8\r\n"
                  "Connection: close\r\n"
                  "\r\n"
                  "draining");
}

static void write_metrics_answer(void)
{
    static const char body[] = "# HELP adieu_draining 1 while draining.\n"
                               "# TYPE adieu_draining gauge\n"
                               "adieu_draining 0\n";
    static const char head[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain; version=0.0.4\r\n"
                               "Content-Length: 85\r\n"
                               "Connection: close\r\n"
                               "\r\n";
    CHECK_EQ(sizeof(body) - 1, 85);
    char want[512];
    snprintf(want, sizeof(want), "%s%s", head, body);
    check_written(write_metrics, body, want);
    check_written(write_metrics_head, body, head);
    check_written(write_metrics, "",
                  "HTTP/1.1 200 OK\r\n"
                  "Content-Type: text/plain; version=0.0.4\r\n"
                  "Content-Length: 0\r\n"
                  "Connection: close\r\n"
                  "\r\n");
}

static void write_refusals_exact(void)
{
    adieu_handshake_t hs = {
        .kind = ADIEU_HS_REFUSE, .status = 400, .detail = "missing Sec-WebSocket-Key"};
    check_written(write_refusal, &hs,
                  "HTTP/1.1 400 Bad Request\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: 39\r\n"
                  "Connection: close\r\n"
                  "\r\n"
                  "Bad Request: missing Sec-WebSocket-Key\n");
    hs.status = 426;
    hs.detail = "no Upgrade header";
    check_written(write_refusal, &hs,
                  "HTTP/1.1 426 Upgrade Required\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: 36\r\n"
                  "Connection: close\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "\r\n"
                  "Upgrade Required: no Upgrade header\n");
    hs.status = 431;
    hs.detail = "too many header fields";
    check_written(write_refusal, &hs,
                  "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: 56\r\n"
                  "Connection: close\r\n"
                  "\r\n"
                  "Request Header Fields Too Large: too many header fields\n");
    hs.status = 503;
    hs.detail = "draining";
    check_written(write_refusal, &hs,
                  "HTTP/1.1 503 Service Unavailable\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: 30\r\n"
                  "Connection: close\r\n"
                  "\r\n"
                  "Service Unavailable: draining\n");
    hs.status = 404;
    hs.detail = "no such path";
    check_refusal_bytes(&hs);
}

static void write_101_exact_room(void)
{
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    static const char *const proto = "chat";
    adieu_handshake_t hs = {.kind = ADIEU_HS_UPGRADE,
                            .status = 101,
                            .detail = "upgrade",
                            .key = key,
                            .key_len = 24,
                            .subprotocol = proto,
                            .subprotocol_len = 4};
    check_written(write_101, &hs,
                  "HTTP/1.1 101 Switching Protocols\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                  "Sec-WebSocket-Protocol: chat\r\n"
                  "\r\n");
    /* A 256-byte subprotocol name still fits ADIEU_HANDSHAKE_RESPONSE_MAX. */
    char name[257];
    memset(name, 'p', 256);
    name[256] = '\0';
    hs.subprotocol = name;
    hs.subprotocol_len = 256;
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    CHECK(adieu_handshake_write_101(&hs, out, sizeof(out)) > 0);
}

/* Each writer refuses a result of the wrong kind. */
static void write_wrong_kind(void)
{
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    adieu_handshake_t hs = {.kind = ADIEU_HS_REFUSE, .status = 400, .detail = "x"};
    CHECK_EQ(adieu_handshake_write_101(&hs, out, sizeof(out)), ADIEU_EINVAL);
    hs.kind = ADIEU_HS_UPGRADE;
    hs.status = 101;
    CHECK_EQ(adieu_handshake_write_refusal(&hs, out, sizeof(out)), ADIEU_EINVAL);
    hs.kind = ADIEU_HS_HEALTHZ;
    hs.status = 200;
    CHECK_EQ(adieu_handshake_write_refusal(&hs, out, sizeof(out)), ADIEU_EINVAL);
    hs.kind = ADIEU_HS_REFUSE;
    hs.status = 418;
    CHECK_EQ(adieu_handshake_write_refusal(&hs, out, sizeof(out)), ADIEU_EINVAL);
}

/* Every refusal the classifier can give fits ADIEU_HANDSHAKE_RESPONSE_MAX, and every detail
 * is short printable ASCII, fit for a log line as it is. */
static void write_refusals_fit(void)
{
    for (size_t i = 0; i < COUNT(REFUSALS); i++) {
        answer_t a;
        size_t whole = strlen(REFUSALS[i].req);
        decide(REFUSALS[i].req, &whole, 1, 8192, REFUSALS[i].draining ? &DRAINING : &SERVING, &a);
        char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
        CHECK(adieu_handshake_write_refusal(&a.hs, out, sizeof(out)) > 0);
        size_t len = strlen(a.hs.detail);
        CHECK(len > 0 && len <= 48);
        for (size_t k = 0; k < len; k++) {
            CHECK(a.hs.detail[k] >= 0x20 && a.hs.detail[k] < 0x7f && a.hs.detail[k] != '"');
        }
        answer_free(&a);
    }
}

int main(void)
{
    CHECK_RUN(accept_rfc_example);
    CHECK_RUN(accept_other_keys);
    CHECK_RUN(key_validity);
    CHECK_RUN(upgrade_rfc_example);
    CHECK_RUN(upgrade_without_subprotocol);
    CHECK_RUN(upgrade_declines_extensions);
    CHECK_RUN(upgrade_variants);
    CHECK_RUN(subprotocol_client_order);
    CHECK_RUN(subprotocol_repeated_fields);
    CHECK_RUN(subprotocol_exact_match);
    CHECK_RUN(refuse_every_class);
    CHECK_RUN(refuse_connection_tokens);
    CHECK_RUN(refuse_upgrade_tokens);
    CHECK_RUN(refuse_parse_errors);
    CHECK_RUN(plain_routes);
    CHECK_RUN(write_healthz);
    CHECK_RUN(write_metrics_answer);
    CHECK_RUN(write_refusals_exact);
    CHECK_RUN(write_101_exact_room);
    CHECK_RUN(write_wrong_kind);
    CHECK_RUN(write_refusals_fit);
    return check_done();
}
