/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/ws_frame.c, the RFC 6455 frame codec.
 *
 * Every vector is parsed whole, one byte at a time, split in two at every offset, and at
 * seeded random offsets, each chunk from memory flush against a guard page; each way must
 * give the same trace (the frames with their payloads, or the same error after the same
 * number of bytes). While parsing, every event is checked: a header comes once per frame,
 * payload chunks point into the chunk being fed, follow each other without gap, and end with
 * `last` exactly at the declared length.
 *
 * Scenarios: rfc_* (the examples of RFC 6455 §5.7), write_*, mask_*, recv_<violation> (each
 * frame-level rule of §5.1, §5.2 and §5.5 broken once, and checked to fail as soon as the
 * offending header field is complete), len_*, stream_*, close_code_*.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/ws_frame.h"

#include "check.h"

static const uint8_t rfc_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* splitmix64: a small, seedable generator, so every random run can be replayed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------------------------------
 * Traces and the harness that feeds a stream in chunks
 * ------------------------------------------------------------------------------------- */

#define MAX_FRAMES 64
/* Payload bytes kept per frame: vectors that declare more never send it. */
#define MAX_KEPT ((size_t)1 << 20)

typedef struct {
    adieu_ws_opcode_t opcode;
    bool fin;
    uint64_t len;
    size_t got;
    uint8_t *payload;
} frame_rec_t;

typedef struct {
    frame_rec_t f[MAX_FRAMES];
    size_t count;
    int rc;          /* 0, or the error the parser returned */
    const char *why; /* with the error */
    size_t at;       /* bytes consumed in all: at the error, or the whole stream */
    bool ok;         /* every per-event check held */
} trace_t;

static void trace_free(trace_t *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->f[i].payload);
    }
    memset(t, 0, sizeof(*t));
}

static bool record_header(trace_t *t, const adieu_ws_frame_event_t *ev)
{
    if (!CHECK(t->count < MAX_FRAMES)) {
        return false;
    }
    frame_rec_t *r = &t->f[t->count++];
    r->opcode = ev->opcode;
    r->fin = ev->fin;
    r->len = ev->frame_len;
    r->got = 0;
    size_t keep = ev->frame_len < MAX_KEPT ? (size_t)ev->frame_len : MAX_KEPT;
    r->payload = keep > 0 ? malloc(keep) : NULL;
    return CHECK(keep == 0 || r->payload != NULL) && CHECK(ev->data == NULL && ev->len == 0);
}

/* A payload chunk belongs to the last header, points into the chunk fed (in, clen), starts
 * where the previous one ended and is `last` exactly when it reaches the declared length. */
static bool record_payload(trace_t *t, const adieu_ws_frame_event_t *ev, const uint8_t *in,
                           size_t clen)
{
    if (!CHECK(t->count > 0)) {
        return false;
    }
    frame_rec_t *r = &t->f[t->count - 1];
    bool ok = CHECK(ev->len >= 1) && CHECK(ev->data >= in && ev->data + ev->len <= in + clen);
    ok = ok && CHECK_EQ(ev->offset, r->got) && CHECK(r->got + ev->len <= r->len);
    ok = ok && CHECK_EQ(ev->last, r->got + ev->len == r->len);
    ok = ok && CHECK_EQ(ev->opcode, r->opcode) && CHECK_EQ(ev->fin, r->fin) &&
         CHECK_EQ(ev->frame_len, r->len);
    if (!ok || !CHECK(r->got + ev->len <= MAX_KEPT)) {
        return false;
    }
    memcpy(r->payload + r->got, ev->data, ev->len);
    r->got += ev->len;
    return true;
}

/* Feeds one chunk from a guarded copy until it is consumed or the parser fails. */
static void feed_chunk(adieu_ws_frame_parser_t *p, trace_t *t, const uint8_t *src, size_t clen,
                       size_t base)
{
    uint8_t *in = guard_copy(src, clen);
    size_t pos = 0;
    while (t->ok && t->rc == 0) {
        adieu_ws_frame_event_t ev;
        size_t used = SIZE_MAX;
        int rc = adieu_ws_frame_parse(p, clen > 0 ? in + pos : NULL, clen - pos, &used, &ev);
        if (!CHECK(used <= clen - pos)) {
            t->ok = false;
            break;
        }
        pos += used;
        if (rc < 0) {
            t->rc = rc;
            t->why = p->why;
            t->at = base + pos;
            break;
        }
        if (rc == 0) {
            t->ok = CHECK_EQ(pos, clen);
            break;
        }
        t->ok = CHECK_EQ(rc, 1) && CHECK(used > 0);
        if (t->ok) {
            t->ok = ev.type == ADIEU_WS_FRAME_HEADER ? record_header(t, &ev)
                                                     : record_payload(t, &ev, in, clen);
        }
    }
    guard_free(in, clen);
}

typedef enum {
    SPLIT_WHOLE,
    SPLIT_BYTES,
    SPLIT_AT,     /* two chunks: [0, cut) and [cut, n) */
    SPLIT_RANDOM, /* random lengths */
} split_kind_t;

static size_t chunk_len(split_kind_t kind, size_t cut, uint64_t *rng, size_t off, size_t left)
{
    size_t len = left;
    if (kind == SPLIT_BYTES) {
        len = 1;
    } else if (kind == SPLIT_AT && off < cut) {
        len = cut - off;
    } else if (kind == SPLIT_RANDOM) {
        static const size_t scale[] = {3, 17, 300, 70000};
        uint64_t r = next_random(rng);
        len = 1 + (size_t)((r >> 2) % scale[r & 3]);
    }
    return len < left ? len : left;
}

static trace_t run(adieu_ws_role_t role, const uint8_t *s, size_t n, split_kind_t kind, size_t cut,
                   uint64_t seed)
{
    trace_t t = {.ok = true};
    adieu_ws_frame_parser_t p;
    adieu_ws_frame_parser_init(&p, role);
    size_t off = 0;
    while (off < n && t.ok && t.rc == 0) {
        size_t clen = chunk_len(kind, cut, &seed, off, n - off);
        feed_chunk(&p, &t, s + off, clen, off);
        off += clen;
    }
    if (t.rc == 0) {
        t.at = off;
    } else {
        /* A failed parser refuses everything after, valid or not, and consumes nothing. */
        adieu_ws_frame_event_t ev;
        size_t used = 99;
        uint8_t ok_frame[2] = {0x81, 0x00};
        t.ok = CHECK_EQ(adieu_ws_frame_parse(&p, ok_frame, 2, &used, &ev), ADIEU_EINVALID_STATE) &&
               CHECK_EQ(used, 0) && CHECK(!adieu_ws_frame_parser_idle(&p)) && t.ok;
    }
    return t;
}

static bool same_trace(const trace_t *a, const trace_t *b)
{
    bool ok = CHECK(a->ok && b->ok) && CHECK_EQ(a->count, b->count) && CHECK_EQ(a->rc, b->rc) &&
              CHECK(a->why == b->why) && CHECK_EQ(a->at, b->at);
    for (size_t i = 0; ok && i < a->count; i++) {
        const frame_rec_t *x = &a->f[i];
        const frame_rec_t *y = &b->f[i];
        ok = CHECK_EQ(x->opcode, y->opcode) && CHECK_EQ(x->fin, y->fin) &&
             CHECK_EQ(x->len, y->len) && CHECK_EQ(x->got, y->got) &&
             CHECK_MEM_EQ(x->payload, y->payload, x->got);
    }
    return ok;
}

/* Parses s whole, then checks that one byte at a time, every two-chunk split and random
 * splits give the same trace. Returns the whole trace for the scenario's own checks. */
static trace_t check_splits(adieu_ws_role_t role, const uint8_t *s, size_t n)
{
    trace_t whole = run(role, s, n, SPLIT_WHOLE, 0, 0);
    trace_t t = run(role, s, n, SPLIT_BYTES, 0, 0);
    bool ok = same_trace(&whole, &t);
    trace_free(&t);
    for (size_t cut = 1; ok && cut < n; cut++) {
        t = run(role, s, n, SPLIT_AT, cut, 0);
        ok = same_trace(&whole, &t);
        if (!ok) {
            fprintf(stderr, "  split at %zu\n", cut);
        }
        trace_free(&t);
    }
    for (uint64_t seed = 1; ok && seed <= 50; seed++) {
        t = run(role, s, n, SPLIT_RANDOM, 0, seed);
        ok = same_trace(&whole, &t);
        trace_free(&t);
    }
    return whole;
}

/* Builds a client frame: masked header, then the payload masked with key. */
static size_t client_frame(uint8_t *out, adieu_ws_opcode_t op, bool fin, const void *payload,
                           size_t len, const uint8_t key[4])
{
    int h = adieu_ws_frame_header_masked(out, op, fin, len, key);
    if (!CHECK(h > 0)) {
        return 0;
    }
    if (len > 0) {
        memcpy(out + h, payload, len);
    }
    adieu_ws_mask(out + h, len, key, 0);
    return (size_t)h + len;
}

static bool frame_is(const trace_t *t, size_t i, adieu_ws_opcode_t op, bool fin, const void *p,
                     size_t len)
{
    if (!CHECK(i < t->count)) {
        return false;
    }
    const frame_rec_t *r = &t->f[i];
    return CHECK_EQ(r->opcode, op) && CHECK_EQ(r->fin, fin) && CHECK_EQ(r->len, len) &&
           CHECK_EQ(r->got, len) && CHECK_MEM_EQ(r->payload, p, len);
}

/* ---------------------------------------------------------------------------------------
 * RFC 6455 §5.7 examples
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §5.7: "A single-frame unmasked text message": what a client receives. */
static void rfc_unmasked_text(void)
{
    static const uint8_t v[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    trace_t t = check_splits(ADIEU_WS_CLIENT, v, sizeof(v));
    CHECK_EQ(t.rc, 0);
    CHECK_EQ(t.count, 1);
    frame_is(&t, 0, ADIEU_WS_OP_TEXT, true, "Hello", 5);
    trace_free(&t);
    /* A server refuses it: client frames must be masked. */
    t = check_splits(ADIEU_WS_SERVER, v, sizeof(v));
    CHECK_EQ(t.rc, ADIEU_EPROTO);
    trace_free(&t);
}

/* RFC 6455 §5.7: "A single-frame masked text message", as a client sends it. */
static void rfc_masked_text(void)
{
    static const uint8_t v[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    trace_t t = check_splits(ADIEU_WS_SERVER, v, sizeof(v));
    CHECK_EQ(t.rc, 0);
    CHECK_EQ(t.count, 1);
    CHECK_EQ(t.at, sizeof(v));
    frame_is(&t, 0, ADIEU_WS_OP_TEXT, true, "Hello", 5);
    trace_free(&t);
    t = check_splits(ADIEU_WS_CLIENT, v, sizeof(v));
    CHECK_EQ(t.rc, ADIEU_EPROTO);
    trace_free(&t);
}

/* RFC 6455 §5.7: "A fragmented unmasked text message": "Hel" then "lo". */
static void rfc_fragmented_text(void)
{
    static const uint8_t v[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    trace_t t = check_splits(ADIEU_WS_CLIENT, v, sizeof(v));
    CHECK_EQ(t.count, 2);
    frame_is(&t, 0, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    frame_is(&t, 1, ADIEU_WS_OP_CONT, true, "lo", 2);
    trace_free(&t);
}

/* RFC 6455 §5.7: "Unmasked Ping request and masked Ping response" (the response is a pong). */
static void rfc_ping_pong(void)
{
    static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};
    trace_t t = check_splits(ADIEU_WS_CLIENT, ping, sizeof(ping));
    frame_is(&t, 0, ADIEU_WS_OP_PING, true, "Hello", 5);
    trace_free(&t);
    t = check_splits(ADIEU_WS_SERVER, pong, sizeof(pong));
    frame_is(&t, 0, ADIEU_WS_OP_PONG, true, "Hello", 5);
    trace_free(&t);
}

/* RFC 6455 §5.7: "256 bytes binary message in a single unmasked frame" (0x82 0x7E 0x0100) and
 * "64KiB binary message in a single unmasked frame" (0x82 0x7F 0x0000000000010000). */
static void rfc_binary_256_and_64k(void)
{
    static const uint8_t h256[] = {0x82, 0x7e, 0x01, 0x00};
    static const uint8_t h64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    uint8_t *v = malloc(sizeof(h64k) + 65536);
    if (!CHECK(v != NULL)) {
        return;
    }
    for (size_t i = 0; i < 65536; i++) {
        v[sizeof(h64k) + i] = (uint8_t)(i * 7 + 1);
    }
    memcpy(v + sizeof(h64k) - sizeof(h256), h256, sizeof(h256));
    trace_t t = check_splits(ADIEU_WS_CLIENT, v + sizeof(h64k) - sizeof(h256), 4 + 256);
    frame_is(&t, 0, ADIEU_WS_OP_BINARY, true, v + sizeof(h64k), 256);
    trace_free(&t);
    memcpy(v, h64k, sizeof(h64k));
    t = check_splits(ADIEU_WS_CLIENT, v, sizeof(h64k) + 65536);
    frame_is(&t, 0, ADIEU_WS_OP_BINARY, true, v + sizeof(h64k), 65536);
    trace_free(&t);
    free(v);
}

/* The writer produces the §5.7 headers byte for byte. */
static void write_header_rfc(void)
{
    uint8_t out[14];
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_TEXT, true, 5), 2);
    CHECK_MEM_EQ(out, "\x81\x05", 2);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_TEXT, false, 3), 2);
    CHECK_MEM_EQ(out, "\x01\x03", 2);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_CONT, true, 2), 2);
    CHECK_MEM_EQ(out, "\x80\x02", 2);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_PING, true, 5), 2);
    CHECK_MEM_EQ(out, "\x89\x05", 2);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_BINARY, true, 256), 4);
    CHECK_MEM_EQ(out, "\x82\x7e\x01\x00", 4);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_BINARY, true, 65536), 10);
    CHECK_MEM_EQ(out, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    /* The masked "Hello" of §5.7, from the client writer and the mask helper. */
    uint8_t frame[14 + 5];
    CHECK_EQ(client_frame(frame, ADIEU_WS_OP_TEXT, true, "Hello", 5, rfc_key), 11);
    CHECK_MEM_EQ(frame, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    CHECK_EQ(adieu_ws_frame_header_masked(frame, ADIEU_WS_OP_PONG, true, 5, rfc_key), 6);
    CHECK_MEM_EQ(frame, "\x8a\x85\x37\xfa\x21\x3d", 6);
}

/* RFC 6455 §5.2: the shortest length encoding at each boundary. */
static void write_header_lengths(void)
{
    static const struct {
        uint64_t len;
        int size;
        const char *bytes;
    } cases[] = {
        {0, 2, "\x82\x00"},
        {125, 2, "\x82\x7d"},
        {126, 4, "\x82\x7e\x00\x7e"},
        {65535, 4, "\x82\x7e\xff\xff"},
        {65536, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"},
        {UINT64_C(0x7fffffffffffffff), 10, "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t out[10];
        CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_BINARY, true, cases[i].len), cases[i].size);
        CHECK_MEM_EQ(out, cases[i].bytes, (size_t)cases[i].size);
    }
}

static void write_header_invalid(void)
{
    uint8_t out[14];
    memset(out, 0xaa, sizeof(out));
    /* §5.5: control frames are at most 125 bytes and never fragmented. */
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_PING, true, 126), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_CLOSE, false, 2), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_PONG, true, 125), 2);
    /* §5.2: reserved opcodes; a 64-bit length with its top bit set. */
    memset(out, 0xaa, sizeof(out));
    CHECK_EQ(adieu_ws_frame_header(out, (adieu_ws_opcode_t)3, true, 1), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_frame_header(out, (adieu_ws_opcode_t)0xb, true, 1), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_frame_header(out, ADIEU_WS_OP_BINARY, true, UINT64_C(1) << 63), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_frame_header_masked(out, ADIEU_WS_OP_PING, true, 200, rfc_key), ADIEU_EINVAL);
    CHECK_EQ(out[0], 0xaa);
}

/* ---------------------------------------------------------------------------------------
 * Masking
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §5.3, one byte at a time, as the reference. */
static void mask_bytewise(uint8_t *p, size_t n, const uint8_t key[4], unsigned phase)
{
    for (size_t i = 0; i < n; i++) {
        p[i] ^= key[(phase + i) % 4];
    }
}

/* The word-at-a-time masking equals the bytewise definition for every length up to 300,
 * every phase and every alignment, and returns the right phase. */
static void mask_matches_bytewise(void)
{
    uint64_t rng = 5;
    uint8_t a[300 + 16];
    uint8_t b[300 + 16];
    uint8_t key[4];
    for (size_t n = 0; n <= 300; n++) {
        for (unsigned phase = 0; phase < 4; phase++) {
            for (size_t align = 0; align < 8; align++) {
                uint64_t r = next_random(&rng);
                memcpy(key, &r, 4);
                for (size_t i = 0; i < sizeof(a); i++) {
                    a[i] = b[i] = (uint8_t)next_random(&rng);
                }
                CHECK_EQ(adieu_ws_mask(a + align, n, key, phase), (phase + n) % 4);
                mask_bytewise(b + align, n, key, phase);
                if (!CHECK_MEM_EQ(a, b, sizeof(a))) {
                    fprintf(stderr, "  n %zu phase %u align %zu\n", n, phase, align);
                    return;
                }
            }
        }
    }
}

/* Masking a payload in random pieces, carrying the phase, equals masking it at once; masking
 * twice gives the original back. */
static void mask_chunked_phase(void)
{
    enum { N = 100003 };
    uint8_t *orig = malloc(N);
    uint8_t *once = malloc(N);
    uint8_t *parts = malloc(N);
    if (!CHECK(orig != NULL && once != NULL && parts != NULL)) {
        return;
    }
    uint64_t rng = 77;
    for (size_t i = 0; i < N; i++) {
        orig[i] = (uint8_t)next_random(&rng);
    }
    memcpy(once, orig, N);
    memcpy(parts, orig, N);
    CHECK_EQ(adieu_ws_mask(once, N, rfc_key, 0), N % 4);
    unsigned phase = 0;
    for (size_t off = 0; off < N;) {
        size_t len = 1 + (size_t)(next_random(&rng) % 40);
        len = len < N - off ? len : N - off;
        phase = adieu_ws_mask(parts + off, len, rfc_key, phase);
        off += len;
    }
    CHECK_MEM_EQ(once, parts, N);
    adieu_ws_mask(once, N, rfc_key, 0);
    CHECK_MEM_EQ(once, orig, N);
    free(orig);
    free(once);
    free(parts);
}

/* ---------------------------------------------------------------------------------------
 * Violations: each frame-level rule broken once
 * ------------------------------------------------------------------------------------- */

/* Parses v (all splits); checks that it fails with ADIEU_EPROTO after exactly at bytes, with
 * `why` naming the rule, after the frames before it were reported. */
static void expect_fail(adieu_ws_role_t role, const uint8_t *v, size_t n, size_t at,
                        size_t frames_before, const char *why)
{
    trace_t t = check_splits(role, v, n);
    CHECK_EQ(t.rc, ADIEU_EPROTO);
    CHECK_EQ(t.at, at);
    CHECK_EQ(t.count, frames_before);
    if (CHECK(t.why != NULL)) {
        if (!CHECK(strcmp(t.why, why) == 0)) {
            fprintf(stderr, "  why: \"%s\", expected \"%s\"\n", t.why, why);
        }
    }
    trace_free(&t);
}

/* RFC 6455 §5.2: no extension is negotiated, so RSV1..3 must be 0. Refused after the first
 * two bytes, before the masking key or payload arrives. */
static void recv_rsv1(void)
{
    static const uint8_t v[] = {0xc1, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    expect_fail(ADIEU_WS_SERVER, v, sizeof(v), 2, 0, "reserved bits set");
}

static void recv_rsv2(void)
{
    static const uint8_t v[] = {0xa1, 0x80, 1, 2, 3, 4};
    expect_fail(ADIEU_WS_SERVER, v, sizeof(v), 2, 0, "reserved bits set");
}

static void recv_rsv3(void)
{
    static const uint8_t v[] = {0x92, 0x80, 1, 2, 3, 4};
    expect_fail(ADIEU_WS_SERVER, v, sizeof(v), 2, 0, "reserved bits set");
}

/* RFC 6455 §5.2: opcodes 0x3..0x7 and 0xB..0xF are reserved; refused after a valid frame. */
static void recv_reserved_opcode(void)
{
    static const unsigned ops[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        uint8_t v[32];
        size_t n = client_frame(v, ADIEU_WS_OP_TEXT, true, "ok", 2, rfc_key);
        v[n] = (uint8_t)(0x80 | ops[i]);
        v[n + 1] = 0x80;
        memcpy(v + n + 2, rfc_key, 4);
        expect_fail(ADIEU_WS_SERVER, v, n + 6, n + 2, 1, "reserved opcode");
    }
}

/* RFC 6455 §5.5: control frames carry at most 125 bytes, so a 16- or 64-bit length is refused
 * on the second byte. */
static void recv_ctrl_too_long(void)
{
    static const uint8_t ops[] = {0x88, 0x89, 0x8a};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t v16[] = {ops[i], 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
        expect_fail(ADIEU_WS_SERVER, v16, sizeof(v16), 2, 0, "control frame over 125 bytes");
        uint8_t v64[] = {ops[i], 0xff, 0, 0, 0, 0, 0, 0, 0, 0x7e, 1, 2, 3, 4};
        expect_fail(ADIEU_WS_SERVER, v64, sizeof(v64), 2, 0, "control frame over 125 bytes");
    }
    /* 125 is allowed. */
    uint8_t v[6 + 125];
    uint8_t payload[125];
    memset(payload, 'p', sizeof(payload));
    size_t n = client_frame(v, ADIEU_WS_OP_PING, true, payload, 125, rfc_key);
    trace_t t = check_splits(ADIEU_WS_SERVER, v, n);
    CHECK_EQ(t.rc, 0);
    frame_is(&t, 0, ADIEU_WS_OP_PING, true, payload, 125);
    trace_free(&t);
}

/* RFC 6455 §5.5: control frames "MUST NOT be fragmented". */
static void recv_ctrl_fragmented(void)
{
    static const uint8_t ops[] = {0x08, 0x09, 0x0a};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t v[] = {ops[i], 0x80, 1, 2, 3, 4};
        expect_fail(ADIEU_WS_SERVER, v, sizeof(v), 2, 0, "fragmented control frame");
    }
}

/* RFC 6455 §5.1: a server refuses an unmasked frame, a client a masked one. */
static void recv_unmasked(void)
{
    static const uint8_t v[] = {0x82, 0x03, 'a', 'b', 'c'};
    expect_fail(ADIEU_WS_SERVER, v, sizeof(v), 2, 0, "unmasked client frame");
    static const uint8_t empty[] = {0x88, 0x00};
    expect_fail(ADIEU_WS_SERVER, empty, sizeof(empty), 2, 0, "unmasked client frame");
}

static void recv_masked_by_server(void)
{
    static const uint8_t v[] = {0x82, 0x83, 1, 2, 3, 4, 'a', 'b', 'c'};
    expect_fail(ADIEU_WS_CLIENT, v, sizeof(v), 2, 0, "masked server frame");
}

/* RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length". */
static void recv_len16_not_minimal(void)
{
    static const uint8_t zero[] = {0x82, 0xfe, 0x00, 0x00, 1, 2, 3, 4};
    expect_fail(ADIEU_WS_SERVER, zero, sizeof(zero), 4, 0, "length not minimally encoded");
    static const uint8_t v125[] = {0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4};
    expect_fail(ADIEU_WS_SERVER, v125, sizeof(v125), 4, 0, "length not minimally encoded");
}

static void recv_len64_not_minimal(void)
{
    static const uint8_t cases[][2] = {{0x00, 0x00}, {0x00, 0x7d}, {0x00, 0x7e}, {0xff, 0xff}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t v[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, cases[i][0], cases[i][1], 1, 2, 3, 4};
        expect_fail(ADIEU_WS_SERVER, v, sizeof(v), 10, 0, "length not minimally encoded");
    }
}

/* RFC 6455 §5.2: of a 64-bit length "the most significant bit MUST be 0". */
static void recv_len64_msb(void)
{
    static const uint8_t v[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    expect_fail(ADIEU_WS_SERVER, v, sizeof(v), 10, 0, "64-bit length with the high bit set");
    static const uint8_t all[] = {0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_fail(ADIEU_WS_SERVER, all, sizeof(all), 10, 0, "64-bit length with the high bit set");
}

/* The smallest lengths of each encoding are accepted, and a huge one is reported on its
 * header without any payload: the parser never buffers, the caller decides. */
static void len_boundaries(void)
{
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 65537};
    uint8_t *payload = malloc(65537);
    uint8_t *v = malloc(14 + 65537);
    if (!CHECK(payload != NULL && v != NULL)) {
        return;
    }
    uint64_t rng = 9;
    for (size_t i = 0; i < 65537; i++) {
        payload[i] = (uint8_t)next_random(&rng);
    }
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = client_frame(v, ADIEU_WS_OP_BINARY, true, payload, lens[i], rfc_key);
        trace_t t = lens[i] < 1000 ? check_splits(ADIEU_WS_SERVER, v, n)
                                   : run(ADIEU_WS_SERVER, v, n, SPLIT_RANDOM, 0, lens[i]);
        CHECK_EQ(t.rc, 0);
        CHECK_EQ(t.count, 1);
        frame_is(&t, 0, ADIEU_WS_OP_BINARY, true, payload, lens[i]);
        trace_free(&t);
    }
    static const uint8_t huge[] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 1,    2,    3,    4};
    adieu_ws_frame_parser_t p;
    adieu_ws_frame_parser_init(&p, ADIEU_WS_SERVER);
    uint8_t *in = guard_copy(huge, sizeof(huge));
    adieu_ws_frame_event_t ev;
    size_t used;
    CHECK_EQ(adieu_ws_frame_parse(&p, in, sizeof(huge), &used, &ev), 1);
    CHECK(ev.type == ADIEU_WS_FRAME_HEADER && ev.frame_len == UINT64_C(0x7fffffffffffffff));
    CHECK_EQ(used, sizeof(huge));
    CHECK(!adieu_ws_frame_parser_idle(&p));
    guard_free(in, sizeof(huge));
    free(payload);
    free(v);
}

/* ---------------------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------------------- */

/* Many frames of every kind and size, masked with different keys, in one stream: random
 * splits give the same frames and payloads, and the parser is idle exactly between frames. */
static void stream_mixed_frames(void)
{
    enum { FRAMES = 40 };
    static const adieu_ws_opcode_t ops[] = {ADIEU_WS_OP_TEXT, ADIEU_WS_OP_CONT, ADIEU_WS_OP_PING,
                                            ADIEU_WS_OP_BINARY, ADIEU_WS_OP_PONG};
    uint64_t rng = 31;
    size_t cap = 0;
    size_t lens[FRAMES];
    bool fins[FRAMES];
    for (size_t i = 0; i < FRAMES; i++) {
        uint64_t r = next_random(&rng);
        bool control = adieu_ws_opcode_is_control(ops[i % 5]);
        lens[i] = control ? (size_t)(r % 126) : (size_t)(r % ((r & 1) ? 200 : 70000));
        /* Control frames always have fin (§5.5); data frames have it now and then. */
        fins[i] = control || (i % 3) != 0;
        cap += 14 + lens[i];
    }
    uint8_t *s = malloc(cap);
    uint8_t *payloads = malloc(cap);
    if (!CHECK(s != NULL && payloads != NULL)) {
        return;
    }
    size_t n = 0;
    size_t pn = 0;
    for (size_t i = 0; i < FRAMES; i++) {
        uint64_t r = next_random(&rng);
        uint8_t key[4];
        memcpy(key, &r, 4);
        for (size_t k = 0; k < lens[i]; k++) {
            payloads[pn + k] = (uint8_t)next_random(&rng);
        }
        n += client_frame(s + n, ops[i % 5], fins[i], payloads + pn, lens[i], key);
        pn += lens[i];
    }
    for (uint64_t seed = 1; seed <= 200; seed++) {
        trace_t t = run(ADIEU_WS_SERVER, s, n, seed == 1 ? SPLIT_BYTES : SPLIT_RANDOM, 0, seed);
        CHECK(t.ok);
        CHECK_EQ(t.rc, 0);
        CHECK_EQ(t.count, FRAMES);
        size_t off = 0;
        for (size_t i = 0; i < t.count && i < FRAMES; i++) {
            frame_is(&t, i, ops[i % 5], fins[i], payloads + off, lens[i]);
            off += lens[i];
        }
        trace_free(&t);
    }
    free(s);
    free(payloads);
}

static void stream_idle_between_frames(void)
{
    uint8_t v[32];
    size_t n = client_frame(v, ADIEU_WS_OP_TEXT, true, "abc", 3, rfc_key);
    adieu_ws_frame_parser_t p;
    adieu_ws_frame_parser_init(&p, ADIEU_WS_SERVER);
    CHECK(adieu_ws_frame_parser_idle(&p));
    adieu_ws_frame_event_t ev;
    size_t used;
    for (size_t i = 0; i < n; i++) {
        uint8_t *in = guard_copy(v + i, 1);
        int rc = adieu_ws_frame_parse(&p, in, 1, &used, &ev);
        CHECK_EQ(used, 1);
        /* Header events come when the key's last byte arrives, payload bytes one by one. */
        CHECK_EQ(rc, i >= 5 ? 1 : 0);
        CHECK_EQ(adieu_ws_frame_parser_idle(&p), i == n - 1);
        guard_free(in, 1);
    }
    /* An empty input reports nothing, also inside a frame. */
    CHECK_EQ(adieu_ws_frame_parse(&p, NULL, 0, &used, &ev), 0);
    CHECK_EQ(used, 0);
    uint8_t *in = guard_copy(v, 3);
    CHECK_EQ(adieu_ws_frame_parse(&p, in, 3, &used, &ev), 0);
    CHECK_EQ(adieu_ws_frame_parse(&p, NULL, 0, &used, &ev), 0);
    CHECK(!adieu_ws_frame_parser_idle(&p));
    guard_free(in, 3);
}

/* ---------------------------------------------------------------------------------------
 * Close codes
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §7.4.1/§7.4.2 and SPEC section 4: 1000-1003, 1007-1014, 3000-4999; nothing else,
 * checked over the whole 16-bit range. */
static void close_code_classes(void)
{
    static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                     1010, 1011, 1012, 1013, 1014, 3000, 4999};
    static const unsigned invalid[] = {0,    1,    999,  1004, 1005, 1006,
                                       1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        CHECK(adieu_ws_close_code_valid(valid[i]));
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        CHECK(!adieu_ws_close_code_valid(invalid[i]));
    }
    unsigned count = 0;
    for (unsigned code = 0; code <= 0xffff; code++) {
        count += adieu_ws_close_code_valid(code);
    }
    CHECK_EQ(count, 4u + 8u + 2000u);
}

int main(void)
{
    CHECK_RUN(rfc_unmasked_text);
    CHECK_RUN(rfc_masked_text);
    CHECK_RUN(rfc_fragmented_text);
    CHECK_RUN(rfc_ping_pong);
    CHECK_RUN(rfc_binary_256_and_64k);
    CHECK_RUN(write_header_rfc);
    CHECK_RUN(write_header_lengths);
    CHECK_RUN(write_header_invalid);
    CHECK_RUN(mask_matches_bytewise);
    CHECK_RUN(mask_chunked_phase);
    CHECK_RUN(recv_rsv1);
    CHECK_RUN(recv_rsv2);
    CHECK_RUN(recv_rsv3);
    CHECK_RUN(recv_reserved_opcode);
    CHECK_RUN(recv_ctrl_too_long);
    CHECK_RUN(recv_ctrl_fragmented);
    CHECK_RUN(recv_unmasked);
    CHECK_RUN(recv_masked_by_server);
    CHECK_RUN(recv_len16_not_minimal);
    CHECK_RUN(recv_len64_not_minimal);
    CHECK_RUN(recv_len64_msb);
    CHECK_RUN(len_boundaries);
    CHECK_RUN(stream_mixed_frames);
    CHECK_RUN(stream_idle_between_frames);
    CHECK_RUN(close_code_classes);
    return check_done();
}
