/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/http.c, the HTTP/1.1 request-head parser and the plain responses.
 *
 * Every vector is fed whole, one byte at a time, and split in two at every offset, the way
 * the I/O layer feeds it: each call passes all the bytes received so far, copied flush
 * against a guard page so a read past them faults. The split runs must agree with the whole
 * run exactly (same result, same detail, same fields at the same offsets).
 *
 * Scenarios are named <area>_<case>: parse_* (valid heads), reject_* (malformed: 400),
 * limit_* (431), state_*, incremental_*, list_*, header_*, target_*, write_*.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/http.h"

#include "check.h"

/* A string literal with its length, embedded NULs included. */
#define S(lit) (lit), (sizeof(lit) - 1)

/* ---------------------------------------------------------------------------------------
 * The feeding harness
 * ------------------------------------------------------------------------------------- */

typedef struct {
    size_t max_header;
    size_t max_headers;
} limits_t;

static const limits_t DEFAULTS = {8192, ADIEU_HTTP_MAX_HEADERS};

/* The header array of the harness: room for the 8 KiB head of short fields. */
#define HEADERS_ROOM 512

typedef struct {
    int rc;          /* the first non-zero result, or 0 when every call returned 0 */
    size_t held;     /* bytes passed in the call that returned rc */
    size_t calls;    /* calls made */
    size_t head_len; /* rc == 1 */
    const char *detail;
    adieu_http_parser_t p;
    adieu_http_request_t req;
    adieu_http_header_t headers[HEADERS_ROOM];
    uint8_t *buf; /* the guarded buffer of the deciding call, kept for req's pointers */
    size_t buf_len;
} outcome_t;

static void outcome_free(outcome_t *o)
{
    guard_free(o->buf, o->buf_len);
    o->buf = NULL;
}

/* Feeds in[0, n) in chunks ending at cuts[0] < cuts[1] < ... (the last is n): each call
 * passes every byte up to the cut. Stops at the first non-zero result. */
static void feed(const char *in, size_t n, const size_t *cuts, size_t ncuts, limits_t lim,
                 outcome_t *o)
{
    memset(o, 0, sizeof(*o));
    if (lim.max_headers > HEADERS_ROOM) {
        abort();
    }
    adieu_http_parser_init(&o->p, lim.max_header);
    for (size_t k = 0; k < ncuts; k++) {
        size_t held = cuts[k];
        uint8_t *buf = guard_copy(in, held);
        int rc = adieu_http_parse(&o->p, (const char *)buf, held, o->headers, lim.max_headers,
                                  &o->req, &o->head_len);
        o->calls++;
        if (rc != 0 || k + 1 == ncuts) {
            o->rc = rc;
            o->held = held;
            o->buf = buf;
            o->buf_len = held;
            break;
        }
        guard_free(buf, held);
    }
    o->detail = adieu_http_parser_detail(&o->p);
    (void)n;
}

static void feed_whole(const char *in, size_t n, limits_t lim, outcome_t *o)
{
    size_t cut = n;
    feed(in, n, &cut, 1, lim, o);
}

static void feed_bytes(const char *in, size_t n, limits_t lim, outcome_t *o)
{
    size_t *cuts = calloc(n + 1, sizeof(size_t));
    if (cuts == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        cuts[i] = i + 1;
    }
    feed(in, n, cuts, n, lim, o);
    free(cuts);
}

/* The offset of p in the outcome's buffer, or SIZE_MAX when it points elsewhere. */
static size_t offset_in(const outcome_t *o, const char *p)
{
    const char *base = (const char *)o->buf;
    if (p == NULL || p < base || p > base + o->buf_len) {
        return SIZE_MAX;
    }
    return (size_t)(p - base);
}

/* Two runs of the same input agree: result, detail, and every field at the same offset. */
static bool same_outcome(const outcome_t *a, const outcome_t *b)
{
    bool ok = CHECK_EQ(a->rc, b->rc) && CHECK(strcmp(a->detail, b->detail) == 0);
    if (!ok || a->rc != 1) {
        return ok;
    }
    ok = CHECK_EQ(a->head_len, b->head_len) && CHECK_EQ(a->req.num_headers, b->req.num_headers);
    ok = ok && CHECK_EQ(offset_in(a, a->req.method), offset_in(b, b->req.method)) &&
         CHECK_EQ(a->req.method_len, b->req.method_len) &&
         CHECK_EQ(offset_in(a, a->req.target), offset_in(b, b->req.target)) &&
         CHECK_EQ(a->req.target_len, b->req.target_len) &&
         CHECK_EQ(a->req.minor_version, b->req.minor_version);
    for (size_t i = 0; ok && i < a->req.num_headers; i++) {
        const adieu_http_header_t *x = &a->req.headers[i];
        const adieu_http_header_t *y = &b->req.headers[i];
        ok = CHECK_EQ(offset_in(a, x->name), offset_in(b, y->name)) &&
             CHECK_EQ(x->name_len, y->name_len) &&
             CHECK_EQ(offset_in(a, x->value), offset_in(b, y->value)) &&
             CHECK_EQ(x->value_len, y->value_len);
    }
    return ok;
}

/* Feeds the vector whole into *o (kept for the caller's checks), then one byte at a time and
 * split at every offset, each of which must agree with the whole run. */
static void feed_every_way(const char *in, size_t n, limits_t lim, outcome_t *o)
{
    feed_whole(in, n, lim, o);
    outcome_t other;
    feed_bytes(in, n, lim, &other);
    if (!same_outcome(o, &other)) {
        fprintf(stderr, "  one byte at a time disagrees\n");
    }
    outcome_free(&other);
    for (size_t cut = 1; cut < n; cut++) {
        size_t cuts[2] = {cut, n};
        feed(in, n, cuts, 2, lim, &other);
        bool ok = same_outcome(o, &other);
        outcome_free(&other);
        if (!ok) {
            fprintf(stderr, "  split at %zu disagrees\n", cut);
            break;
        }
    }
}

/* Expects the vector to be refused with err, whichever way it is fed; the detail must
 * contain want_detail. */
static void expect_error(const char *in, size_t n, limits_t lim, int err, const char *want_detail)
{
    outcome_t o;
    feed_every_way(in, n, lim, &o);
    if (!CHECK_EQ(o.rc, err) || !CHECK(strstr(o.detail, want_detail) != NULL)) {
        fprintf(stderr, "  input: \"%.*s\" detail: \"%s\"\n", (int)(n < 120 ? n : 120), in,
                o.detail);
    }
    outcome_free(&o);
}

static bool str_is(const char *p, size_t n, const char *want)
{
    return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

typedef struct {
    const char *name;
    const char *value;
} hv_t;

static void expect_headers(const outcome_t *o, const hv_t *want, size_t count)
{
    if (!CHECK_EQ(o->req.num_headers, count)) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const adieu_http_header_t *h = &o->req.headers[i];
        if (!CHECK(str_is(h->name, h->name_len, want[i].name)) ||
            !CHECK(str_is(h->value, h->value_len, want[i].value))) {
            fprintf(stderr, "  header %zu: \"%.*s\": \"%.*s\"\n", i, (int)h->name_len, h->name,
                    (int)h->value_len, h->value);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Valid heads
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §1.3, the client's opening handshake, followed by the first bytes of a masked
 * frame (RFC 6455 §5.7) that must be left for the WebSocket parser. */
static const char RFC6455_REQUEST[] = "GET /chat HTTP/1.1\r\n"
                                      "Host: server.example.com\r\n"
                                      "Upgrade: websocket\r\n"
                                      "Connection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Origin: http://example.com\r\n"
                                      "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                      "Sec-WebSocket-Version: 13\r\n"
                                      "\r\n"
                                      "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";

static void parse_rfc6455_example(void)
{
    size_t n = sizeof(RFC6455_REQUEST) - 1;
    size_t head = n - 11;
    outcome_t o;
    feed_every_way(RFC6455_REQUEST, n, DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.head_len, head);
    CHECK(str_is(o.req.method, o.req.method_len, "GET"));
    CHECK(str_is(o.req.target, o.req.target_len, "/chat"));
    CHECK_EQ(o.req.minor_version, 1);
    static const hv_t want[] = {
        {"Host", "server.example.com"},   {"Upgrade", "websocket"},
        {"Connection", "Upgrade"},        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
        {"Origin", "http://example.com"}, {"Sec-WebSocket-Protocol", "chat, superchat"},
        {"Sec-WebSocket-Version", "13"},
    };
    expect_headers(&o, want, sizeof(want) / sizeof(want[0]));
    /* Zero-copy: the fields are in the caller's buffer, the array is the caller's. */
    CHECK_EQ(offset_in(&o, o.req.method), 0);
    CHECK_EQ(offset_in(&o, o.req.target), 4);
    CHECK(o.req.headers == o.headers);
    CHECK_EQ(offset_in(&o, o.req.headers[0].value), 26);
    outcome_free(&o);
    /* The head alone, with nothing after it, gives the same head. */
    feed_every_way(RFC6455_REQUEST, head, DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.head_len, head);
    outcome_free(&o);
    /* One byte short of the blank line: not complete, whichever way it came. */
    feed_every_way(RFC6455_REQUEST, head - 1, DEFAULTS, &o);
    CHECK_EQ(o.rc, 0);
    CHECK_EQ(adieu_http_parser_eof(&o.p), ADIEU_ETRUNCATED);
    outcome_free(&o);
}

static void parse_no_headers(void)
{
    outcome_t o;
    feed_every_way(S("GET / HTTP/1.1\r\n\r\n"), DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.head_len, 18);
    CHECK_EQ(o.req.num_headers, 0);
    CHECK(str_is(o.req.target, o.req.target_len, "/"));
    outcome_free(&o);
}

/* RFC 9112 §5: field-line = field-name ":" OWS field-value OWS; the OWS is not part of the
 * value, the whitespace inside it is. */
static void parse_ows_trimmed(void)
{
    outcome_t o;
    feed_every_way(S("GET / HTTP/1.1\r\n"
                     "A:x\r\n"
                     "B: \t x y \t \r\n"
                     "C:\t\tq\t r\r\n"
                     "D:\r\n"
                     "E:   \t \r\n"
                     "\r\n"),
                   DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    static const hv_t want[] = {{"A", "x"}, {"B", "x y"}, {"C", "q\t r"}, {"D", ""}, {"E", ""}};
    expect_headers(&o, want, 5);
    outcome_free(&o);
}

/* obs-text (0x80-0xFF) is allowed in field values (RFC 9110 §5.5), and HTAB inside them. */
static void parse_obs_text_in_value(void)
{
    outcome_t o;
    feed_every_way(S("GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\t\xff\r\n\r\n"), DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    static const hv_t want[] = {{"X-Name", "caf\xc3\xa9\t\xff"}};
    expect_headers(&o, want, 1);
    outcome_free(&o);
}

static void parse_versions(void)
{
    static const struct {
        const char *line;
        int minor;
    } cases[] = {
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\n\r\n", 1},
        {"GET / HTTP/1.9\r\n\r\n", 9},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        outcome_t o;
        feed_every_way(cases[i].line, strlen(cases[i].line), DEFAULTS, &o);
        CHECK_EQ(o.rc, 1);
        CHECK_EQ(o.req.minor_version, cases[i].minor);
        outcome_free(&o);
    }
}

/* The parser keeps names as sent; lookups ignore case (RFC 9110 §5.1). Every tchar is
 * allowed in a name and in a method, and a target may hold any VCHAR. */
static void parse_token_and_target_chars(void)
{
    outcome_t o;
    feed_every_way(S("M-!#$%&'*+.^_`|~09azAZ /x HTTP/1.1\r\n\r\n"), DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    CHECK(str_is(o.req.method, o.req.method_len, "M-!#$%&'*+.^_`|~09azAZ"));
    outcome_free(&o);
    feed_every_way(S("GET /a?b=[]{}<>\"\\@:;,~%20 HTTP/1.1\r\n"
                     "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"),
                   DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    CHECK(str_is(o.req.target, o.req.target_len, "/a?b=[]{}<>\"\\@:;,~%20"));
    static const hv_t want[] = {{"!#$%&'*+-.^_`|~09azAZ", "v"}};
    expect_headers(&o, want, 1);
    outcome_free(&o);
}

/* Long but valid parts are fine: only max_header bounds them. */
static void parse_long_parts(void)
{
    size_t n = 9000;
    char *in = malloc(n);
    if (!CHECK(in != NULL)) {
        return;
    }
    size_t w = 0;
    memset(in + w, 'M', 2000);
    w += 2000;
    in[w++] = ' ';
    in[w++] = '/';
    memset(in + w, 'p', 2000);
    w += 2000;
    memcpy(in + w, " HTTP/1.1\r\nX: ", 14);
    w += 14;
    memset(in + w, 'v', 2000);
    w += 2000;
    memcpy(in + w, "\r\n\r\n", 4);
    w += 4;
    outcome_t o;
    feed_whole(in, w, DEFAULTS, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.head_len, w);
    CHECK_EQ(o.req.method_len, 2000);
    CHECK_EQ(o.req.target_len, 2001);
    CHECK_EQ(o.req.headers[0].value_len, 2000);
    outcome_free(&o);
    free(in);
}

/* ---------------------------------------------------------------------------------------
 * Malformed heads: ADIEU_EPROTO (400)
 * ------------------------------------------------------------------------------------- */

/* RFC 9112 §5.2: obs-fold in a request is rejected (we never unfold). */
static void reject_obs_fold(void)
{
    expect_error(S("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "obs-fold");
    expect_error(S("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "obs-fold");
    /* A folded line that is only whitespace is still a fold. */
    expect_error(S("GET / HTTP/1.1\r\nX: a\r\n \r\nY: b\r\n\r\n"), DEFAULTS, ADIEU_EPROTO,
                 "obs-fold");
}

/* RFC 9112 §2.2: whitespace between the start-line and the first field line. */
static void reject_space_before_first_header(void)
{
    expect_error(S("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "whitespace");
    expect_error(S("GET / HTTP/1.1\r\n\tHost: x\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "whitespace");
}

/* RFC 9112 §5.1: no whitespace between the field name and the colon. */
static void reject_space_before_colon(void)
{
    expect_error(S("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), DEFAULTS, ADIEU_EPROTO,
                 "whitespace before colon");
    expect_error(S("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), DEFAULTS, ADIEU_EPROTO,
                 "whitespace before colon");
    expect_error(S("GET / HTTP/1.1\r\nA: 1\r\nHost  :x\r\n\r\n"), DEFAULTS, ADIEU_EPROTO,
                 "whitespace before colon");
}

static void reject_bad_header_names(void)
{
    static const char *const lines[] = {
        ": empty name", "No colon here", "NoColon", "X Y: z",       "X@: z",
        "X(Y): z",      "X/Y: z",        "X\"Y: z", "X\xc3\xa9: z", "X[: z",
        "{X}: z",       "X,Y: z",        "X=Y: z",  "X\\Y: z",      "=: z",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char in[128];
        int n = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n%s\r\n\r\n", lines[i]);
        expect_error(in, (size_t)n, DEFAULTS, ADIEU_EPROTO, "");
    }
}

/* RFC 9112 §2.2 lets a recipient accept a bare LF as a line end; we refuse it, and as soon as
 * it arrives. */
static void reject_bare_lf(void)
{
    expect_error(S("GET / HTTP/1.1\nHost: x\n\n"), DEFAULTS, ADIEU_EPROTO, "bare LF");
    expect_error(S("GET / HTTP/1.1\r\nHost: x\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bare LF");
    expect_error(S("GET / HTTP/1.1\r\nHost: x\r\n\n"), DEFAULTS, ADIEU_EPROTO, "bare LF");
    expect_error(S("\n"), DEFAULTS, ADIEU_EPROTO, "bare LF");
    /* Refused on the call that brought the LF, not when the head would have ended. */
    outcome_t o;
    feed_bytes(S("GET / HTTP/1.1\nHost: x\r\n\r\n"), DEFAULTS, &o);
    CHECK_EQ(o.rc, ADIEU_EPROTO);
    CHECK_EQ(o.held, 15);
    outcome_free(&o);
}

/* RFC 9112 §2.2: "A sender MUST NOT generate a bare CR"; we refuse one. */
static void reject_bare_cr(void)
{
    expect_error(S("GET / HTTP/1.1\rHost: x\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bare CR");
    expect_error(S("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bare CR");
    expect_error(S("GET / HTTP/1.1\r\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bare CR");
    expect_error(S("GET / HTTP/1.1\r\n\r\r\n"), DEFAULTS, ADIEU_EPROTO, "bare CR");
}

/* NUL, the other control bytes (HTAB aside) and DEL, anywhere in the head (RFC 9110 §5.5),
 * refused with the byte that brought them. */
static void reject_control_bytes(void)
{
    /* Z marks where the byte goes. */
    static const char *const where[] = {
        "GZT / HTTP/1.1\r\nHost: x\r\n\r\n",     /* method */
        "GET /Z HTTP/1.1\r\nHost: x\r\n\r\n",    /* target */
        "GET / HTTP/1.1Z\r\nHost: x\r\n\r\n",    /* version */
        "GET / HTTP/1.1\r\nHoZst: x\r\n\r\n",    /* name */
        "GET / HTTP/1.1\r\nHost: aZb\r\n\r\n",   /* value */
        "GET / HTTP/1.1\r\nHost: abZ\r\n\r\n",   /* value, trailing */
        "GET / HTTP/1.1\r\nHost: x\r\nZ\r\n\r\n" /* a line of its own */
    };
    for (unsigned c = 0; c < 0x80; c++) {
        if ((c >= 0x20 && c != 0x7f) || c == '\t' || c == '\r' || c == '\n') {
            continue;
        }
        for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
            char in[64];
            size_t n = strlen(where[i]);
            memcpy(in, where[i], n);
            size_t pos = (size_t)(strchr(where[i], 'Z') - where[i]);
            in[pos] = (char)c;
            expect_error(in, n, DEFAULTS, ADIEU_EPROTO, "control byte");
            outcome_t o;
            feed_bytes(in, n, DEFAULTS, &o);
            CHECK_EQ(o.held, pos + 1);
            outcome_free(&o);
        }
    }
}

/* scan() steps over a line a word of 8 bytes at a time: a control byte, CR or LF must be
 * found at every offset within a word, and HTAB and obs-text, which stop the word loop
 * without ending the line, must be stepped over at every offset. The value is long enough
 * for several words, and its start moves with the name so that every alignment is seen. */
static void scan_every_offset(void)
{
    static const unsigned char bad[] = {0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f};
    static const unsigned char good[] = {'\t', 0x80, 0xc3, 0xff};
    for (size_t name = 1; name <= 8; name++) {
        for (size_t pos = 0; pos < 40; pos++) {
            char in[128];
            size_t n = 0;
            memcpy(in, "GET / HTTP/1.1\r\n", 16);
            n = 16;
            memset(in + n, 'N', name);
            n += name;
            memcpy(in + n, ": ", 2);
            n += 2;
            size_t value = n;
            memset(in + n, 'v', 40);
            n += 40;
            memcpy(in + n, "\r\n\r\n", 4);
            n += 4;
            for (size_t k = 0; k < sizeof(bad); k++) {
                in[value + pos] = (char)bad[k];
                outcome_t o;
                feed_whole(in, n, DEFAULTS, &o);
                CHECK_EQ(o.rc, ADIEU_EPROTO);
                CHECK(strcmp(o.detail, "control byte in request head") == 0);
                outcome_free(&o);
            }
            /* A bare LF and a bare CR, at the same places. */
            in[value + pos] = '\n';
            outcome_t o;
            feed_whole(in, n, DEFAULTS, &o);
            CHECK(o.rc == ADIEU_EPROTO && strcmp(o.detail, "bare LF") == 0);
            outcome_free(&o);
            in[value + pos] = '\r';
            feed_whole(in, n, DEFAULTS, &o);
            CHECK(o.rc == ADIEU_EPROTO && strcmp(o.detail, "bare CR") == 0);
            outcome_free(&o);
            for (size_t k = 0; k < sizeof(good); k++) {
                in[value + pos] = (char)good[k];
                feed_whole(in, n, DEFAULTS, &o);
                /* A HTAB at either end of the value is OWS, trimmed. */
                size_t trim = good[k] == '\t' && (pos == 0 || pos == 39) ? 1 : 0;
                if (CHECK_EQ(o.rc, 1) && CHECK_EQ(o.req.num_headers, 1)) {
                    CHECK_EQ(o.req.headers[0].value_len, 40 - trim);
                }
                outcome_free(&o);
            }
            in[value + pos] = 'v';
        }
    }
}

/* HTAB is allowed in field values only: never in the request line, never in a name. */
static void reject_htab_outside_values(void)
{
    expect_error(S("GET\t/ HTTP/1.1\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bad method");
    expect_error(S("GET /\tHTTP/1.1\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bad request-target");
    expect_error(S("GET / HTTP/1.1\t\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bad HTTP version");
    expect_error(S("GET / HTTP/1.1\r\nX\tY: z\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "");
}

static void reject_request_lines(void)
{
    static const struct {
        const char *line;
        const char *detail;
    } cases[] = {
        {"", "bad method"},
        {" GET / HTTP/1.1", "bad method"},
        {"GET", "bad method"},
        {"GET ", "bad request-target"},
        {"GET /", "bad request-target"},
        {"GET / ", "bad HTTP version"},
        {"GET  / HTTP/1.1", "bad request-target"},
        {"GET /  HTTP/1.1", "bad HTTP version"},
        {"GET / HTTP/1.1 ", "bad HTTP version"},
        {"GET / / HTTP/1.1", "bad HTTP version"},
        {"GET / HTTP/1.1x", "bad HTTP version"},
        {"GET / HTTP/1.", "bad HTTP version"},
        {"GET / HTTP/1", "bad HTTP version"},
        {"GET / HTTP/11.1", "bad HTTP version"},
        {"GET / HTTP/1.10", "bad HTTP version"},
        {"GET / http/1.1", "bad HTTP version"},
        {"GET / HTTPS/1.1", "bad HTTP version"},
        {"GET / HTTP/1.a", "bad HTTP version"},
        {"GET / HTTP/a.1", "bad HTTP version"},
        {"GET / HTTP/2.0", "unsupported HTTP version"},
        {"GET / HTTP/0.9", "unsupported HTTP version"},
        {"GET /", "bad request-target"},
        {"G(T / HTTP/1.1", "bad method"},
        {"GET: / HTTP/1.1", "bad method"},
        {"GET /\xff HTTP/1.1", "bad request-target"},
        {"\xef\xbb\xbfGET / HTTP/1.1", "bad method"},
        {"GET / HTTP/1.1 GET / HTTP/1.1", "bad HTTP version"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char in[128];
        int n = snprintf(in, sizeof(in), "%s\r\nHost: x\r\n\r\n", cases[i].line);
        expect_error(in, (size_t)n, DEFAULTS, ADIEU_EPROTO, cases[i].detail);
    }
    /* An empty line before the request line is not skipped (RFC 9112 §2.2's SHOULD is for
     * leftovers of a previous request). */
    expect_error(S("\r\nGET / HTTP/1.1\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bad method");
    /* The smallest complete head is refused, not taken for an empty request. */
    expect_error(S("\r\n\r\n"), DEFAULTS, ADIEU_EPROTO, "bad method");
}

/* ---------------------------------------------------------------------------------------
 * Limits: ADIEU_ETOOBIG (431)
 * ------------------------------------------------------------------------------------- */

/* A head of exactly n bytes: request line, one header padded to size, blank line. */
static char *head_of_size(size_t n)
{
    static const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
    char *in = malloc(n + 16);
    if (in == NULL || n < sizeof(start) - 1 + 4) {
        abort();
    }
    memcpy(in, start, sizeof(start) - 1);
    memset(in + sizeof(start) - 1, 'p', n - (sizeof(start) - 1) - 4);
    memcpy(in + n - 4, "\r\n\r\nEXTRA", 9);
    return in;
}

static void limit_max_header_exact(void)
{
    limits_t lim = {200, 8};
    char *in = head_of_size(200);
    outcome_t o;
    feed_every_way(in, 200, lim, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.head_len, 200);
    outcome_free(&o);
    /* Bytes after a head that fits do not count against it. */
    feed_every_way(in, 205, lim, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.head_len, 200);
    outcome_free(&o);
    free(in);
}

static void limit_max_header_one_over(void)
{
    limits_t lim = {200, 8};
    char *in = head_of_size(201);
    expect_error(in, 201, lim, ADIEU_ETOOBIG, "max_header");
    /* Known as soon as max_header bytes are held without the end of the head: not one byte
     * later, and without waiting for the rest. */
    outcome_t o;
    feed_bytes(in, 201, lim, &o);
    CHECK_EQ(o.rc, ADIEU_ETOOBIG);
    CHECK_EQ(o.held, 200);
    outcome_free(&o);
    feed_whole(in, 199, lim, &o);
    CHECK_EQ(o.rc, 0);
    outcome_free(&o);
    /* Only the first max_header bytes are looked at, however many were sent. */
    feed_whole(in, 205, lim, &o);
    CHECK_EQ(o.rc, ADIEU_ETOOBIG);
    CHECK_EQ(o.p.bytes_examined, 200);
    outcome_free(&o);
    free(in);
}

/* The limit wins over malformations past it: the answer does not depend on bytes the parser
 * has no business reading. */
static void limit_before_garbage(void)
{
    limits_t lim = {20, 8};
    expect_error(S("GET / HTTP/1.1\r\nX: abcd\nefgh\r\n\r\n"), lim, ADIEU_ETOOBIG, "max_header");
    expect_error(S("GET / HTTP/1.1\r\nX:\nb\r\n\r\n"), lim, ADIEU_EPROTO, "bare LF");
}

static void limit_too_many_headers(void)
{
    limits_t lim = {8192, 4};
    outcome_t o;
    feed_every_way(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), lim, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.req.num_headers, 4);
    outcome_free(&o);
    expect_error(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"), lim,
                 ADIEU_ETOOBIG, "too many header fields");
    /* Empty-valued fields count like any other. */
    expect_error(S("GET / HTTP/1.1\r\nA:\r\nA:\r\nA:\r\nA:\r\nA:\r\n\r\n"), lim, ADIEU_ETOOBIG,
                 "too many header fields");
    limits_t none = {8192, 0};
    feed_every_way(S("GET / HTTP/1.1\r\n\r\n"), none, &o);
    CHECK_EQ(o.rc, 1);
    outcome_free(&o);
    expect_error(S("GET / HTTP/1.1\r\nA: 1\r\n\r\n"), none, ADIEU_ETOOBIG, "too many");
}

/* ---------------------------------------------------------------------------------------
 * Incremental feeding (slowloris) and parser states
 * ------------------------------------------------------------------------------------- */

/* An 8 KiB head fed one byte at a time: every call before the last returns 0, and the parser
 * looks at each byte a bounded number of times (scanned once, parsed once at the end), not
 * at every byte so far on every call (which would be about n * n / 2 = 33 million). */
static void incremental_linear(void)
{
    enum { N = 8192 };
    char *in = malloc(N);
    if (!CHECK(in != NULL)) {
        return;
    }
    size_t w = (size_t)snprintf(in, N, "GET /slow HTTP/1.1\r\n");
    for (int i = 0; w + 80 < N; i++) {
        w += (size_t)snprintf(in + w, N - w, "X-Slow-%04d: %020d\r\n", i, i);
    }
    memcpy(in + w, "X-Pad: ", 7);
    w += 7;
    while (w < N - 4) {
        in[w++] = 'z';
    }
    memcpy(in + w, "\r\n\r\n", 4);
    w += 4;
    if (!CHECK_EQ(w, N)) {
        free(in);
        return;
    }
    limits_t lim = {N, 400};
    outcome_t o;
    feed_bytes(in, N, lim, &o);
    CHECK_EQ(o.rc, 1);
    CHECK_EQ(o.calls, N);
    CHECK_EQ(o.head_len, N);
    CHECK(o.req.num_headers > 200);
    CHECK(o.p.bytes_examined <= 2 * (size_t)N);
    fprintf(stderr,
            "  incremental_linear: %zu bytes examined for a %d-byte head fed in %zu "
            "calls\n",
            o.p.bytes_examined, N, o.calls);
    outcome_free(&o);
    free(in);
}

/* A call with no new bytes does no work. */
static void incremental_no_new_bytes(void)
{
    adieu_http_parser_t p;
    adieu_http_parser_init(&p, 8192);
    adieu_http_header_t h[4];
    adieu_http_request_t req;
    size_t head = 0;
    uint8_t *buf = guard_copy("GET / HT", 8);
    CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 8, h, 4, &req, &head), 0);
    size_t seen = p.bytes_examined;
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 8, h, 4, &req, &head), 0);
    }
    CHECK_EQ(p.bytes_examined, seen);
    guard_free(buf, 8);
}

static void state_done_is_terminal(void)
{
    adieu_http_parser_t p;
    adieu_http_parser_init(&p, 8192);
    adieu_http_header_t h[4];
    adieu_http_request_t req;
    size_t head = 0;
    uint8_t *buf = guard_copy("GET / HTTP/1.1\r\n\r\nGET", 21);
    CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 21, h, 4, &req, &head), 1);
    CHECK_EQ(head, 18);
    CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 21, h, 4, &req, &head), ADIEU_EINVALID_STATE);
    CHECK_EQ(adieu_http_parser_eof(&p), 0);
    CHECK(strcmp(adieu_http_parser_detail(&p), "") == 0);
    guard_free(buf, 21);
}

static void state_failed_is_terminal(void)
{
    adieu_http_parser_t p;
    adieu_http_parser_init(&p, 8192);
    adieu_http_header_t h[4];
    adieu_http_request_t req;
    size_t head = 0;
    uint8_t *buf = guard_copy("GET /\x01", 6);
    CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 6, h, 4, &req, &head), ADIEU_EPROTO);
    CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 6, h, 4, &req, &head), ADIEU_EINVALID_STATE);
    CHECK_EQ(adieu_http_parser_eof(&p), ADIEU_EINVALID_STATE);
    CHECK(strcmp(adieu_http_parser_detail(&p), "control byte in request head") == 0);
    guard_free(buf, 6);
}

static void state_eof(void)
{
    adieu_http_parser_t p;
    adieu_http_parser_init(&p, 8192);
    CHECK_EQ(adieu_http_parser_eof(&p), 0);
    adieu_http_header_t h[4];
    adieu_http_request_t req;
    size_t head = 0;
    CHECK_EQ(adieu_http_parse(&p, NULL, 0, h, 4, &req, &head), 0);
    CHECK_EQ(adieu_http_parser_eof(&p), 0);
    uint8_t *buf = guard_copy("G", 1);
    CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 1, h, 4, &req, &head), 0);
    CHECK_EQ(adieu_http_parser_eof(&p), ADIEU_ETRUNCATED);
    guard_free(buf, 1);
    /* A zero max_header refuses the first byte. */
    adieu_http_parser_init(&p, 0);
    buf = guard_copy("G", 1);
    CHECK_EQ(adieu_http_parse(&p, (const char *)buf, 1, h, 4, &req, &head), ADIEU_ETOOBIG);
    guard_free(buf, 1);
}

/* ---------------------------------------------------------------------------------------
 * Reading fields and lists
 * ------------------------------------------------------------------------------------- */

static void header_lookup(void)
{
    outcome_t o;
    feed_whole(S("GET / HTTP/1.1\r\nhost: a\r\nX: 1\r\nHOST: b\r\nHoSt: c\r\n\r\n"), DEFAULTS, &o);
    if (!CHECK_EQ(o.rc, 1)) {
        outcome_free(&o);
        return;
    }
    CHECK_EQ(adieu_http_header_count(&o.req, "Host"), 3);
    CHECK_EQ(adieu_http_header_count(&o.req, "x"), 1);
    CHECK_EQ(adieu_http_header_count(&o.req, "Hos"), 0);
    CHECK_EQ(adieu_http_header_count(&o.req, "Hosts"), 0);
    const adieu_http_header_t *h = adieu_http_header_find(&o.req, "Host");
    CHECK(h != NULL && str_is(h->value, h->value_len, "a"));
    h = adieu_http_header_next(&o.req, "host", h);
    CHECK(h != NULL && str_is(h->value, h->value_len, "b"));
    h = adieu_http_header_next(&o.req, "HOST", h);
    CHECK(h != NULL && str_is(h->value, h->value_len, "c"));
    CHECK(adieu_http_header_next(&o.req, "Host", h) == NULL);
    CHECK(adieu_http_header_find(&o.req, "Upgrade") == NULL);
    outcome_free(&o);
}

static void header_ieq(void)
{
    CHECK(adieu_http_ieq("Upgrade", 7, "upgrade"));
    CHECK(adieu_http_ieq("UPGRADE", 7, "Upgrade"));
    CHECK(adieu_http_ieq("", 0, ""));
    CHECK(!adieu_http_ieq("Upgrad", 6, "upgrade"));
    CHECK(!adieu_http_ieq("Upgrades", 8, "upgrade"));
    CHECK(!adieu_http_ieq("Upgrade", 6, "upgrade"));
    /* ASCII only: 'K' (KELVIN SIGN, UTF-8 e2 84 aa) is not a 'k'; '@' and '`' are not
     * letters next to 'A' and 'a'. */
    CHECK(!adieu_http_ieq("\xe2\x84\xaa", 3, "k"));
    CHECK(!adieu_http_ieq("@", 1, "`"));
    CHECK(!adieu_http_ieq("[", 1, "{"));
}

/* Collects the elements of a list value into "a|b|c". */
static void list_join(const char *value, char *out, size_t cap)
{
    adieu_http_list_t it;
    adieu_http_list_init(&it, value, strlen(value));
    const char *e;
    size_t n;
    out[0] = '\0';
    while (adieu_http_list_next(&it, &e, &n)) {
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%.*s", used > 0 ? "|" : "", (int)n, e);
    }
}

static void list_elements(void)
{
    static const struct {
        const char *value;
        const char *joined;
    } cases[] = {
        {"", ""},
        {",", ""},
        {" , ,\t,", ""},
        {"Upgrade", "Upgrade"},
        {"keep-alive, Upgrade", "keep-alive|Upgrade"},
        {"keep-alive,Upgrade", "keep-alive|Upgrade"},
        {"  keep-alive ,\tUpgrade\t ", "keep-alive|Upgrade"},
        {",,Upgrade,,", "Upgrade"},
        {"a, , b", "a|b"},
        {"a b, c", "a b|c"},
        {"chat, superchat", "chat|superchat"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[128];
        list_join(cases[i].value, out, sizeof(out));
        if (!CHECK(strcmp(out, cases[i].joined) == 0)) {
            fprintf(stderr, "  \"%s\" gave \"%s\"\n", cases[i].value, out);
        }
    }
    adieu_http_list_t it;
    adieu_http_list_init(&it, NULL, 0);
    const char *e;
    size_t n;
    CHECK(!adieu_http_list_next(&it, &e, &n));
}

/* Connection token lists in every case and spacing, and split over repeated fields. */
static void list_has_token(void)
{
    static const struct {
        const char *fields;
        bool has;
    } cases[] = {
        {"Connection: Upgrade\r\n", true},
        {"Connection: upgrade\r\n", true},
        {"Connection: UPGRADE\r\n", true},
        {"Connection: uPgRaDe\r\n", true},
        {"Connection: keep-alive, Upgrade\r\n", true},
        {"Connection: keep-alive,Upgrade\r\n", true},
        {"Connection: Upgrade, keep-alive\r\n", true},
        {"Connection:   keep-alive  ,   upgrade   \r\n", true},
        {"Connection:\tkeep-alive\t,\tUpgrade\t\r\n", true},
        {"Connection: ,,Upgrade,,\r\n", true},
        {"Connection: keep-alive, , Upgrade\r\n", true},
        {"connection: Upgrade\r\n", true},
        {"CONNECTION: Upgrade\r\n", true},
        {"Connection: keep-alive\r\nConnection: Upgrade\r\n", true},
        {"Connection: keep-alive\r\n", false},
        {"Connection: Upgrades\r\n", false},
        {"Connection: Upgrade-Insecure\r\n", false},
        {"Connection: Up grade\r\n", false},
        {"Connection: keep-alive Upgrade\r\n", false},
        {"Connection: keep-alive;Upgrade\r\n", false},
        {"Connection: \"Upgrade\"\r\n", false},
        {"Connection:\r\n", false},
        {"Connection: close\r\nX-Connection: Upgrade\r\n", false},
        {"Upgrade: Upgrade\r\n", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char in[256];
        int n = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n%s\r\n", cases[i].fields);
        outcome_t o;
        feed_every_way(in, (size_t)n, DEFAULTS, &o);
        bool ok = CHECK_EQ(o.rc, 1) &&
                  CHECK_EQ(adieu_http_list_has(&o.req, "Connection", "upgrade"), cases[i].has);
        if (!ok) {
            fprintf(stderr, "  fields: %s\n", cases[i].fields);
        }
        outcome_free(&o);
    }
}

/* ---------------------------------------------------------------------------------------
 * Request-target forms
 * ------------------------------------------------------------------------------------- */

static void target_paths(void)
{
    static const struct {
        const char *target;
        const char *path; /* NULL: no path */
    } cases[] = {
        {"/", "/"},
        {"/chat", "/chat"},
        {"/chat?room=1", "/chat"},
        {"/healthz?", "/healthz"},
        {"/a/b/c?x?y", "/a/b/c"},
        {"/?x", "/"},
        {"http://example.com/chat?x=1", "/chat"},
        {"HTTP://example.com:80/healthz", "/healthz"},
        {"ws://h/metrics", "/metrics"},
        {"wss+x.y-z://h/p", "/p"},
        {"http://example.com", "/"},
        {"http://example.com?x", "/"},
        {"http://user@h:1/x", "/x"},
        {"*", NULL},
        {"example.com:443", NULL},
        {"1http://h/x", NULL},
        {"http:/h/x", NULL},
        {"http//h/x", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = NULL;
        size_t len = 0;
        bool got = adieu_http_target_path(cases[i].target, strlen(cases[i].target), &path, &len);
        bool ok = CHECK_EQ(got, cases[i].path != NULL);
        if (ok && got) {
            ok = CHECK(str_is(path, len, cases[i].path));
        }
        if (!ok) {
            fprintf(stderr, "  target \"%s\"\n", cases[i].target);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------- */

static void write_response_bytes(void)
{
    static const char want[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 8\r\n"
                               "Connection: close\r\n"
                               "Retry-After: 1\r\n"
                               "\r\n"
                               "draining";
    size_t n = sizeof(want) - 1;
    /* Exactly the room needed, flush against the guard page: one byte more would fault. */
    uint8_t *room = guard_copy(want, n);
    memset(room, 0, n);
    int rc = adieu_http_write_response((char *)room, n, 503, "Retry-After: 1\r\n", "text/plain",
                                       "draining", 8);
    CHECK_EQ(rc, (int)n);
    CHECK_MEM_EQ(room, want, n);
    /* Every smaller buffer is refused, and written only within its bounds. */
    for (size_t cap = 0; cap < n; cap++) {
        CHECK_EQ(adieu_http_write_response((char *)room + n - cap, cap, 503, "Retry-After: 1\r\n",
                                           "text/plain", "draining", 8),
                 ADIEU_ETOOBIG);
    }
    guard_free(room, n);
}

static void write_head_only(void)
{
    char out[256];
    int rc =
        adieu_http_write_head(out, sizeof(out), 200, NULL, "text/plain; version=0.0.4", 123456789);
    static const char want[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain; version=0.0.4\r\n"
                               "Content-Length: 123456789\r\n"
                               "Connection: close\r\n"
                               "\r\n";
    CHECK_EQ(rc, (int)sizeof(want) - 1);
    CHECK_MEM_EQ(out, want, sizeof(want) - 1);
    rc = adieu_http_write_head(out, sizeof(out), 400, NULL, "text/plain", 0);
    CHECK(rc > 0 && memcmp(out, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    CHECK(strstr(out, "Content-Length: 0\r\n") != NULL);
    /* No phrase, no response; and 1xx is not a plain response. */
    CHECK_EQ(adieu_http_write_head(out, sizeof(out), 299, NULL, "text/plain", 0), ADIEU_EINVAL);
    CHECK_EQ(adieu_http_write_head(out, sizeof(out), 101, NULL, "text/plain", 0), ADIEU_EINVAL);
}

static void write_status_text(void)
{
    static const struct {
        int status;
        const char *text;
    } cases[] = {
        {101, "Switching Protocols"},   {200, "OK"},
        {400, "Bad Request"},           {404, "Not Found"},
        {426, "Upgrade Required"},      {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"}, {503, "Service Unavailable"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *t = adieu_http_status_text(cases[i].status);
        CHECK(t != NULL && strcmp(t, cases[i].text) == 0);
    }
    CHECK(adieu_http_status_text(418) == NULL);
    CHECK(adieu_http_status_text(0) == NULL);
}

int main(void)
{
    CHECK_RUN(parse_rfc6455_example);
    CHECK_RUN(parse_no_headers);
    CHECK_RUN(parse_ows_trimmed);
    CHECK_RUN(parse_obs_text_in_value);
    CHECK_RUN(parse_versions);
    CHECK_RUN(parse_token_and_target_chars);
    CHECK_RUN(parse_long_parts);
    CHECK_RUN(reject_obs_fold);
    CHECK_RUN(reject_space_before_first_header);
    CHECK_RUN(reject_space_before_colon);
    CHECK_RUN(reject_bad_header_names);
    CHECK_RUN(reject_bare_lf);
    CHECK_RUN(reject_bare_cr);
    CHECK_RUN(reject_control_bytes);
    CHECK_RUN(scan_every_offset);
    CHECK_RUN(reject_htab_outside_values);
    CHECK_RUN(reject_request_lines);
    CHECK_RUN(limit_max_header_exact);
    CHECK_RUN(limit_max_header_one_over);
    CHECK_RUN(limit_before_garbage);
    CHECK_RUN(limit_too_many_headers);
    CHECK_RUN(incremental_linear);
    CHECK_RUN(incremental_no_new_bytes);
    CHECK_RUN(state_done_is_terminal);
    CHECK_RUN(state_failed_is_terminal);
    CHECK_RUN(state_eof);
    CHECK_RUN(header_lookup);
    CHECK_RUN(header_ieq);
    CHECK_RUN(list_elements);
    CHECK_RUN(list_has_token);
    CHECK_RUN(target_paths);
    CHECK_RUN(write_response_bytes);
    CHECK_RUN(write_head_only);
    CHECK_RUN(write_status_text);
    return check_done();
}
