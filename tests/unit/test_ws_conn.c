/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/ws_conn.c, the server side of a WebSocket connection.
 *
 * Every vector (a byte stream a client could send) is fed whole, one byte at a time, split in
 * two at every offset and at seeded random offsets, each chunk from memory flush against a
 * guard page. Each way must give the same trace: the events (copied, with the stream offset
 * each one consumed up to), every control byte the connection asks us to send (taken after
 * each call, as an I/O layer would), and the final state. Fed whole, most messages take the
 * fast path of adieu_ws_conn_recv(); one byte at a time, none can, so this also holds the
 * fast path to the frame parser's result (recv_random_conversations most of all). While
 * feeding, each event is checked for where its bytes live: a message in the caller's input or
 * the assembly buffer, a control payload in the caller's input or the control block, never
 * NULL.
 *
 * Scenarios form a matrix: recv_<what the peer sends> and send_<what we do>, plus
 * output_*, eof_*, assembly_*, ctl_* (the control block) and fail_*. Streams are built with the
 * client-side writer of proto/ws_frame.h (masked, as RFC 6455 §5.3 requires of clients).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/alloc.h"
#include "adieu/errors.h"
#include "proto/ws_conn.h"

#include "check.h"

#define MIB ((size_t)1024 * 1024)
#define MAX_EVENTS 512
#define MAX_OUT 8192

/* splitmix64: a small, seedable generator, so every random run can be replayed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------------------------------
 * Streams a client sends
 * ------------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *b;
    size_t n;
    size_t cap;
    uint64_t rng; /* masking keys */
} stream_t;

static void s_put(stream_t *s, const void *p, size_t len)
{
    if (s->n + len > s->cap) {
        size_t cap = (s->n + len) * 2 + 64;
        uint8_t *b = realloc(s->b, cap);
        if (b == NULL) {
            abort();
        }
        s->b = b;
        s->cap = cap;
    }
    if (len > 0) {
        memcpy(s->b + s->n, p, len);
    }
    s->n += len;
}

/* Appends a masked frame with a fresh random key. */
static void s_frame(stream_t *s, adieu_ws_opcode_t op, bool fin, const void *p, size_t len)
{
    uint8_t head[14];
    uint64_t r = next_random(&s->rng);
    uint8_t key[4];
    memcpy(key, &r, 4);
    int h = adieu_ws_frame_header_masked(head, op, fin, len, key);
    if (!CHECK(h > 0)) {
        return;
    }
    s_put(s, head, (size_t)h);
    size_t at = s->n;
    s_put(s, p, len);
    adieu_ws_mask(s->b + at, len, key, 0);
}

/* Appends a close frame with a code and reason (code < 0: empty close). */
static void s_close(stream_t *s, long code, const char *reason, size_t len)
{
    uint8_t payload[2 + 256] = {0};
    size_t n = 0;
    if (code >= 0) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        memcpy(payload + 2, reason, len);
        n = 2 + len;
    }
    s_frame(s, ADIEU_WS_OP_CLOSE, true, payload, n);
}

static void s_text(stream_t *s, const char *text)
{
    s_frame(s, ADIEU_WS_OP_TEXT, true, text, strlen(text));
}

static void s_free(stream_t *s)
{
    free(s->b);
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------------------------------
 * Traces and the harness
 * ------------------------------------------------------------------------------------- */

typedef struct {
    adieu_ws_event_type_t type;
    adieu_ws_opcode_t opcode;
    uint8_t *data;
    size_t len;
    unsigned code;
    adieu_ws_fail_t fail;
    const char *detail;
    bool in_place; /* MESSAGE, PING, PONG, CLOSE: its bytes were in the input fed */
    /* Not FAIL: the stream offset the call that gave it consumed up to, which is where the
     * frame that completed it ends, however the stream is split. (A FAIL consumes the rest
     * of its chunk, so its offset depends on the split.) */
    size_t at;
    /* An empty MESSAGE: where its data points, the same for every split (it is in no input,
     * and a message assembled from empty fragments has no storage either). */
    const uint8_t *empty_data;
} rec_t;

typedef struct {
    rec_t ev[MAX_EVENTS];
    size_t count;
    uint8_t out[MAX_OUT]; /* control output taken */
    size_t out_len;
    adieu_ws_state_t state;
    /* The rest of the final state: what adieu_ws_conn_eof() says, and the bookkeeping of the
     * message being received, which must not depend on how the stream was split either. */
    int eof;
    bool msg_active;
    adieu_ws_opcode_t msg_opcode;
    size_t msg_len;
    uint32_t utf8_state;
    bool frame_idle; /* unless FAILED: then where the parser stopped depends on the split */
    size_t base;     /* the stream offset of the chunk being fed */
    size_t fed;      /* stream bytes fed by earlier feed_stream() calls */
    bool ok;
} trace_t;

static void trace_free(trace_t *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->ev[i].data);
    }
    t->count = 0;
}

static void take_output(adieu_ws_conn_t *c, trace_t *t)
{
    const uint8_t *p;
    size_t n;
    while ((n = adieu_ws_conn_output(c, &p)) > 0) {
        if (!CHECK(t->out_len + n <= MAX_OUT)) {
            t->ok = false;
            return;
        }
        memcpy(t->out + t->out_len, p, n);
        t->out_len += n;
        adieu_ws_conn_output_consume(c, n);
    }
}

static bool inside(const void *p, size_t n, const void *base, size_t size)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t b = (uintptr_t)base;
    return base != NULL && a >= b && a + n <= b + size;
}

/* Copies an event, after checking where its bytes are. */
static bool record(const adieu_ws_conn_t *c, trace_t *t, const adieu_ws_event_t *ev,
                   const uint8_t *in, size_t clen)
{
    if (!CHECK(t->count < MAX_EVENTS) || !CHECK(ev->data != NULL)) {
        return false;
    }
    rec_t *r = &t->ev[t->count++];
    memset(r, 0, sizeof(*r));
    r->type = ev->type;
    r->len = ev->len;
    bool ok = true;
    switch (ev->type) {
    case ADIEU_WS_EV_MESSAGE:
        r->opcode = ev->opcode;
        r->in_place = ev->len > 0 && inside(ev->data, ev->len, in, clen);
        r->empty_data = ev->len == 0 ? ev->data : NULL;
        ok = ev->len == 0 || r->in_place ||
             CHECK(inside(ev->data, ev->len, c->assembly.data, c->assembly.cap));
        break;
    case ADIEU_WS_EV_PING:
    case ADIEU_WS_EV_PONG:
    case ADIEU_WS_EV_CLOSE:
        r->code = ev->code;
        r->in_place = ev->len > 0 && inside(ev->data, ev->len, in, clen);
        ok = ev->len == 0 || r->in_place ||
             CHECK(c->ctl != NULL && inside(ev->data, ev->len, c->ctl->ctrl, sizeof(c->ctl->ctrl)));
        break;
    case ADIEU_WS_EV_FAIL:
        r->code = ev->code;
        r->fail = ev->fail;
        r->detail = ev->detail;
        ok = CHECK_EQ(ev->len, 0) && CHECK(ev->detail != NULL) &&
             CHECK_EQ(ev->code, adieu_ws_fail_code(ev->fail)) &&
             CHECK_EQ(adieu_ws_conn_state(c), ADIEU_WS_FAILED);
        break;
    default:
        ok = CHECK(false && "unknown event type");
        break;
    }
    r->data = malloc(ev->len + 1);
    if (!CHECK(r->data != NULL)) {
        return false;
    }
    memcpy(r->data, ev->data, ev->len);
    return ok;
}

/* Feeds one chunk from a guarded copy, calling again after every event until all of it is
 * consumed; takes the output after each call when take is set. */
static void feed(adieu_ws_conn_t *c, trace_t *t, const uint8_t *src, size_t clen, bool take)
{
    uint8_t *in = guard_copy(src, clen);
    size_t pos = 0;
    while (t->ok) {
        adieu_ws_event_t ev;
        size_t used = SIZE_MAX;
        int rc = adieu_ws_conn_recv(c, clen > 0 ? in + pos : NULL, clen - pos, &used, &ev);
        if (!CHECK(used <= clen - pos)) {
            t->ok = false;
            break;
        }
        pos += used;
        if (rc == 0) {
            t->ok = CHECK_EQ(pos, clen);
        } else {
            /* Each event moves forward, or a caller looping on 1 would never end. */
            t->ok = CHECK_EQ(rc, 1) && CHECK(used > 0) && record(c, t, &ev, in, clen);
            if (t->ok && ev.type != ADIEU_WS_EV_FAIL) {
                t->ev[t->count - 1].at = t->base + pos;
            }
        }
        if (take) {
            take_output(c, t);
        }
        if (rc == 0) {
            break;
        }
    }
    guard_free(in, clen);
}

typedef enum {
    SPLIT_WHOLE,
    SPLIT_BYTES,
    SPLIT_AT,
    SPLIT_RANDOM,
} split_kind_t;

static size_t chunk_len(split_kind_t kind, size_t cut, uint64_t *rng, size_t off, size_t left)
{
    size_t len = left;
    if (kind == SPLIT_BYTES) {
        len = 1;
    } else if (kind == SPLIT_AT && off < cut) {
        len = cut - off;
    } else if (kind == SPLIT_RANDOM) {
        static const size_t scale[] = {3, 40, 1000, 200000};
        uint64_t r = next_random(rng);
        len = 1 + (size_t)((r >> 2) % scale[r & 3]);
    }
    return len < left ? len : left;
}

/* Feeds the stream to c as kind says, trimming after each chunk as the I/O layer does after
 * each read: a message assembled across chunks must survive it. */
static void feed_stream(adieu_ws_conn_t *c, trace_t *t, const uint8_t *s, size_t n,
                        split_kind_t kind, size_t cut, uint64_t seed)
{
    for (size_t off = 0; off < n && t->ok;) {
        size_t clen = chunk_len(kind, cut, &seed, off, n - off);
        t->base = t->fed + off;
        feed(c, t, s + off, clen, true);
        adieu_ws_conn_trim(c);
        off += clen;
    }
    t->fed += n;
    t->state = adieu_ws_conn_state(c);
    t->eof = adieu_ws_conn_eof(c);
    t->msg_active = c->msg_active;
    t->msg_opcode = c->msg_opcode;
    t->msg_len = c->msg_len;
    t->utf8_state = c->utf8.state;
    t->frame_idle = t->state != ADIEU_WS_FAILED && adieu_ws_frame_parser_idle(&c->frame);
}

/* Feeds the stream as kind says, with our close (code alone) sent once close_at bytes were fed
 * (SIZE_MAX: never): the same stream offset however the stream is split. */
static trace_t *run_at(size_t max_message, const uint8_t *s, size_t n, split_kind_t kind,
                       size_t cut, uint64_t seed, size_t close_at)
{
    trace_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        abort();
    }
    t->ok = true;
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, max_message);
    size_t first = close_at < n ? close_at : n;
    feed_stream(&c, t, s, first, kind, cut, seed);
    if (close_at <= n) {
        /* Refused unless OPEN, the same way for every split: the state here is split-free. */
        (void)adieu_ws_conn_send_close(&c, 1001, NULL, 0);
        take_output(&c, t);
        feed_stream(&c, t, s + first, n - first, kind, cut, seed + 1);
    }
    /* Between messages, an idle connection holds no heap memory once trimmed: its output was
     * all taken, so no control block either. */
    if (adieu_ws_conn_eof(&c) == 0) {
        feed(&c, t, NULL, 0, true);
        adieu_ws_conn_trim(&c);
        t->ok = CHECK(c.assembly.data == NULL) && CHECK(c.ctl == NULL) && t->ok;
    }
    adieu_ws_conn_free(&c);
    return t;
}

static trace_t *run(size_t max_message, const uint8_t *s, size_t n, split_kind_t kind, size_t cut,
                    uint64_t seed)
{
    return run_at(max_message, s, n, kind, cut, seed, SIZE_MAX);
}

static void run_free(trace_t *t)
{
    trace_free(t);
    free(t);
}

static bool same_trace(const trace_t *a, const trace_t *b)
{
    bool ok = CHECK(a->ok && b->ok) && CHECK_EQ(a->count, b->count) &&
              CHECK_EQ(a->state, b->state) && CHECK_EQ(a->out_len, b->out_len) &&
              CHECK_MEM_EQ(a->out, b->out, a->out_len) && CHECK_EQ(a->eof, b->eof) &&
              CHECK_EQ(a->msg_active, b->msg_active) && CHECK_EQ(a->msg_opcode, b->msg_opcode) &&
              CHECK_EQ(a->msg_len, b->msg_len) && CHECK_EQ(a->utf8_state, b->utf8_state) &&
              CHECK_EQ(a->frame_idle, b->frame_idle);
    for (size_t i = 0; ok && i < a->count; i++) {
        const rec_t *x = &a->ev[i];
        const rec_t *y = &b->ev[i];
        ok = CHECK_EQ(x->type, y->type) && CHECK_EQ(x->opcode, y->opcode) &&
             CHECK_EQ(x->len, y->len) && CHECK_MEM_EQ(x->data, y->data, x->len) &&
             CHECK_EQ(x->code, y->code) && CHECK_EQ(x->fail, y->fail) &&
             CHECK(x->detail == y->detail) && CHECK_EQ(x->at, y->at) &&
             CHECK(x->empty_data == y->empty_data);
    }
    return ok;
}

/* Feeds the stream whole, then checks that one byte at a time, every two-chunk split and
 * random splits give the same trace. Returns the whole trace. */
static trace_t *check_splits(size_t max_message, const stream_t *s)
{
    trace_t *whole = run(max_message, s->b, s->n, SPLIT_WHOLE, 0, 0);
    trace_t *t = run(max_message, s->b, s->n, SPLIT_BYTES, 0, 0);
    bool ok = same_trace(whole, t);
    run_free(t);
    for (size_t cut = 1; ok && cut < s->n; cut++) {
        t = run(max_message, s->b, s->n, SPLIT_AT, cut, 0);
        ok = same_trace(whole, t);
        if (!ok) {
            fprintf(stderr, "  split at %zu\n", cut);
        }
        run_free(t);
    }
    for (uint64_t seed = 1; ok && seed <= 20; seed++) {
        t = run(max_message, s->b, s->n, SPLIT_RANDOM, 0, seed);
        ok = same_trace(whole, t);
        run_free(t);
    }
    return whole;
}

/* ---------------------------------------------------------------------------------------
 * Expectations
 * ------------------------------------------------------------------------------------- */

static bool is_event(const trace_t *t, size_t i, adieu_ws_event_type_t type, const void *data,
                     size_t len)
{
    return CHECK(i < t->count) && CHECK_EQ(t->ev[i].type, type) && CHECK_EQ(t->ev[i].len, len) &&
           CHECK_MEM_EQ(t->ev[i].data, data, len);
}

static bool is_message(const trace_t *t, size_t i, adieu_ws_opcode_t op, const void *data,
                       size_t len)
{
    return is_event(t, i, ADIEU_WS_EV_MESSAGE, data, len) && CHECK_EQ(t->ev[i].opcode, op);
}

static bool is_close(const trace_t *t, size_t i, unsigned code, const char *reason)
{
    return is_event(t, i, ADIEU_WS_EV_CLOSE, reason, strlen(reason)) &&
           CHECK_EQ(t->ev[i].code, code);
}

/* The last event is a failure of that kind and detail, and the output ends with our close
 * frame for it (code, then the detail as reason). */
static bool is_fail(const trace_t *t, adieu_ws_fail_t kind, unsigned code, const char *detail)
{
    if (!CHECK(t->count > 0)) {
        return false;
    }
    const rec_t *r = &t->ev[t->count - 1];
    bool ok = CHECK_EQ(r->type, ADIEU_WS_EV_FAIL) && CHECK_EQ(r->fail, kind) &&
              CHECK_EQ(r->code, code) && CHECK(r->detail != NULL) &&
              CHECK_EQ(t->state, ADIEU_WS_FAILED);
    if (ok && !CHECK(strcmp(r->detail, detail) == 0)) {
        fprintf(stderr, "  detail \"%s\", expected \"%s\"\n", r->detail, detail);
        return false;
    }
    size_t dl = strlen(detail);
    uint8_t frame[4 + 125] = {0x88, (uint8_t)(2 + dl), (uint8_t)(code >> 8), (uint8_t)code};
    memcpy(frame + 4, detail, dl);
    return ok && CHECK(t->out_len >= 4 + dl) &&
           CHECK_MEM_EQ(t->out + t->out_len - (4 + dl), frame, 4 + dl);
}

static bool output_is(const trace_t *t, const void *bytes, size_t n)
{
    return CHECK_EQ(t->out_len, n) && CHECK_MEM_EQ(t->out, bytes, n);
}

/* Checks a stream that must fail with kind/detail after the events before it. */
static void expect_fail(size_t max, const stream_t *s, size_t events_before, adieu_ws_fail_t kind,
                        const char *detail)
{
    trace_t *t = check_splits(max, s);
    CHECK_EQ(t->count, events_before + 1);
    is_fail(t, kind, adieu_ws_fail_code(kind), detail);
    run_free(t);
}

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §5.7, a single-frame masked text message, "Hello": in place when whole. */
static void recv_rfc_masked_hello(void)
{
    stream_t s = {0};
    static const uint8_t v[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    s_put(&s, v, sizeof(v));
    trace_t *t = check_splits(100, &s);
    CHECK_EQ(t->count, 1);
    is_message(t, 0, ADIEU_WS_OP_TEXT, "Hello", 5);
    CHECK(t->ev[0].in_place);
    CHECK_EQ(t->state, ADIEU_WS_OPEN);
    CHECK_EQ(t->out_len, 0);
    run_free(t);
    /* One byte at a time it cannot be in place: it comes from the assembly buffer. */
    t = run(100, s.b, s.n, SPLIT_BYTES, 0, 0);
    CHECK(t->count == 1 && !t->ev[0].in_place);
    run_free(t);
    s_free(&s);
}

/* RFC 6455 §5.7, the fragmented text message "Hel" + "lo", masked as a client sends it. */
static void recv_rfc_fragmented_hello(void)
{
    stream_t s = {.rng = 1};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    trace_t *t = check_splits(100, &s);
    CHECK_EQ(t->count, 1);
    is_message(t, 0, ADIEU_WS_OP_TEXT, "Hello", 5);
    CHECK(!t->ev[0].in_place);
    run_free(t);
    s_free(&s);
}

/* RFC 6455 §5.7, 256 bytes and 64 KiB of binary, each in one frame (masked here). */
static void recv_rfc_binary_256_and_64k(void)
{
    uint8_t *p = malloc(65536);
    if (!CHECK(p != NULL)) {
        return;
    }
    for (size_t i = 0; i < 65536; i++) {
        p[i] = (uint8_t)(i ^ (i >> 8));
    }
    stream_t s = {.rng = 2};
    s_frame(&s, ADIEU_WS_OP_BINARY, true, p, 256);
    trace_t *t = check_splits(65536, &s);
    CHECK(t->count == 1 && is_message(t, 0, ADIEU_WS_OP_BINARY, p, 256));
    run_free(t);
    s_free(&s);
    s.rng = 3;
    s_frame(&s, ADIEU_WS_OP_BINARY, true, p, 65536);
    /* Splits of this one: whole, bytes and random (every offset is covered above). */
    t = run(65536, s.b, s.n, SPLIT_WHOLE, 0, 0);
    CHECK(t->count == 1 && is_message(t, 0, ADIEU_WS_OP_BINARY, p, 65536) && t->ev[0].in_place);
    run_free(t);
    for (uint64_t seed = 0; seed < 10; seed++) {
        t = run(65536, s.b, s.n, seed == 0 ? SPLIT_BYTES : SPLIT_RANDOM, 0, seed);
        CHECK(t->count == 1 && is_message(t, 0, ADIEU_WS_OP_BINARY, p, 65536));
        run_free(t);
    }
    s_free(&s);
    free(p);
}

static void recv_empty_messages(void)
{
    stream_t s = {.rng = 4};
    s_frame(&s, ADIEU_WS_OP_TEXT, true, "", 0);
    s_frame(&s, ADIEU_WS_OP_BINARY, true, "", 0);
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "", 0);
    s_frame(&s, ADIEU_WS_OP_CONT, false, "", 0);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "", 0);
    s_text(&s, "x");
    trace_t *t = check_splits(1, &s);
    CHECK_EQ(t->count, 4);
    is_message(t, 0, ADIEU_WS_OP_TEXT, "", 0);
    is_message(t, 1, ADIEU_WS_OP_BINARY, "", 0);
    is_message(t, 2, ADIEU_WS_OP_TEXT, "", 0);
    is_message(t, 3, ADIEU_WS_OP_TEXT, "x", 1);
    run_free(t);
    s_free(&s);
}

/* Binary messages are not UTF-8: any bytes pass. */
static void recv_binary_not_validated(void)
{
    stream_t s = {.rng = 5};
    s_frame(&s, ADIEU_WS_OP_BINARY, false, "\xff\xfe", 2);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "\xed\xa0\x80\xc0", 4);
    trace_t *t = check_splits(100, &s);
    CHECK(t->count == 1 && is_message(t, 0, ADIEU_WS_OP_BINARY, "\xff\xfe\xed\xa0\x80\xc0", 6));
    run_free(t);
    s_free(&s);
}

/* Messages back to back, some in place, some assembled, keep their order and bytes. */
static void recv_many_messages(void)
{
    stream_t s = {.rng = 6};
    char text[64];
    for (int i = 0; i < 30; i++) {
        snprintf(text, sizeof(text), "message %d", i);
        if (i % 4 == 3) {
            s_frame(&s, ADIEU_WS_OP_TEXT, false, text, 3);
            s_frame(&s, ADIEU_WS_OP_CONT, true, text + 3, strlen(text) - 3);
        } else {
            s_text(&s, text);
        }
    }
    trace_t *t = check_splits(100, &s);
    CHECK_EQ(t->count, 30);
    for (int i = 0; i < 30 && i < (int)t->count; i++) {
        snprintf(text, sizeof(text), "message %d", i);
        is_message(t, (size_t)i, ADIEU_WS_OP_TEXT, text, strlen(text));
    }
    run_free(t);
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * Pings and pongs
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §5.5.2: a ping is answered with a pong carrying the same payload. */
static void recv_ping(void)
{
    stream_t s = {.rng = 7};
    s_frame(&s, ADIEU_WS_OP_PING, true, "Hello", 5);
    s_frame(&s, ADIEU_WS_OP_PING, true, "", 0);
    trace_t *t = check_splits(100, &s);
    CHECK_EQ(t->count, 2);
    is_event(t, 0, ADIEU_WS_EV_PING, "Hello", 5);
    is_event(t, 1, ADIEU_WS_EV_PING, "", 0);
    output_is(t, "\x8a\x05Hello\x8a\x00", 9);
    run_free(t);
    s_free(&s);
}

/* The largest ping, 125 bytes, comes back whole. */
static void recv_ping_125(void)
{
    uint8_t payload[125];
    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] = (uint8_t)(i * 3);
    }
    stream_t s = {.rng = 8};
    s_frame(&s, ADIEU_WS_OP_PING, true, payload, 125);
    trace_t *t = check_splits(100, &s);
    is_event(t, 0, ADIEU_WS_EV_PING, payload, 125);
    CHECK(t->out_len == 127 && t->out[0] == 0x8a && t->out[1] == 125);
    CHECK_MEM_EQ(t->out + 2, payload, 125);
    run_free(t);
    s_free(&s);
}

/* RFC 6455 §5.5.3: pings answered before output is taken get one pong, for the latest. */
static void recv_ping_latest_pong_only(void)
{
    stream_t s = {.rng = 9};
    s_frame(&s, ADIEU_WS_OP_PING, true, "one", 3);
    s_frame(&s, ADIEU_WS_OP_PING, true, "two", 3);
    s_frame(&s, ADIEU_WS_OP_PING, true, "three", 5);
    trace_t t = {.ok = true};
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    feed(&c, &t, s.b, s.n, false);
    CHECK_EQ(t.count, 3);
    take_output(&c, &t);
    output_is(&t, "\x8a\x05three", 7);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* A pong is reported and never answered. */
static void recv_pong(void)
{
    stream_t s = {.rng = 10};
    static const uint8_t v[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    s_put(&s, v, sizeof(v)); /* RFC 6455 §5.7, the masked pong "Hello" */
    s_frame(&s, ADIEU_WS_OP_PONG, true, "", 0);
    trace_t *t = check_splits(100, &s);
    CHECK_EQ(t->count, 2);
    is_event(t, 0, ADIEU_WS_EV_PONG, "Hello", 5);
    is_event(t, 1, ADIEU_WS_EV_PONG, "", 0);
    CHECK_EQ(t->out_len, 0);
    run_free(t);
    s_free(&s);
}

/* RFC 6455 §5.4: control frames may come between the fragments of a message. */
static void recv_ctrl_between_fragments(void)
{
    stream_t s = {.rng = 11};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    s_frame(&s, ADIEU_WS_OP_PING, true, "p1", 2);
    s_frame(&s, ADIEU_WS_OP_CONT, false, "", 0);
    s_frame(&s, ADIEU_WS_OP_PONG, true, "p2", 2);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    trace_t *t = check_splits(100, &s);
    CHECK_EQ(t->count, 3);
    is_event(t, 0, ADIEU_WS_EV_PING, "p1", 2);
    is_event(t, 1, ADIEU_WS_EV_PONG, "p2", 2);
    is_message(t, 2, ADIEU_WS_OP_TEXT, "Hello", 5);
    output_is(t, "\x8a\x02p1", 4);
    run_free(t);
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * Fragmentation and frame rules
 * ------------------------------------------------------------------------------------- */

/* RFC 6455 §5.4: a continuation frame needs a message to continue. */
static void recv_continuation_without_start(void)
{
    stream_t s = {.rng = 12};
    s_text(&s, "ok");
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    s_text(&s, "never seen");
    expect_fail(100, &s, 1, ADIEU_WS_FAIL_PROTOCOL_ERROR, "continuation without a message");
    s_free(&s);
}

/* RFC 6455 §5.4: no new data message may start inside a fragmented one. */
static void recv_data_inside_fragmented(void)
{
    static const adieu_ws_opcode_t ops[] = {ADIEU_WS_OP_TEXT, ADIEU_WS_OP_BINARY};
    for (size_t i = 0; i < 2; i++) {
        stream_t s = {.rng = 13};
        s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
        s_frame(&s, ops[i], true, "lo", 2);
        expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR,
                    "new message inside a fragmented one");
        s_free(&s);
    }
}

/* The frame-level rules of proto/ws_frame.c, seen from the connection: each one is a 1002
 * with our close frame queued. */
static void recv_ctrl_too_long(void)
{
    stream_t s = {.rng = 14};
    s_text(&s, "before");
    static const uint8_t v[] = {0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
    s_put(&s, v, sizeof(v));
    expect_fail(100, &s, 1, ADIEU_WS_FAIL_PROTOCOL_ERROR, "control frame over 125 bytes");
    s_free(&s);
}

static void recv_ctrl_fragmented(void)
{
    stream_t s = {.rng = 15};
    static const uint8_t v[] = {0x09, 0x82, 1, 2, 3, 4, 'a', 'b'};
    s_put(&s, v, sizeof(v));
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR, "fragmented control frame");
    s_free(&s);
}

static void recv_reserved_opcode(void)
{
    for (unsigned op = 0x3; op <= 0xf; op++) {
        if (op >= 0x8 && op <= 0xa) {
            continue;
        }
        stream_t s = {.rng = 16};
        uint8_t v[] = {(uint8_t)(0x80 | op), 0x80, 1, 2, 3, 4};
        s_put(&s, v, sizeof(v));
        expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR, "reserved opcode");
        s_free(&s);
    }
}

static void recv_rsv1(void)
{
    stream_t s = {.rng = 17};
    /* What a permessage-deflate client sends when the server did not agree to it. */
    static const uint8_t v[] = {0xc1, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    s_put(&s, v, sizeof(v));
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR, "reserved bits set");
    s_free(&s);
}

static void recv_unmasked(void)
{
    stream_t s = {.rng = 18};
    static const uint8_t v[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    s_put(&s, v, sizeof(v)); /* RFC 6455 §5.7, the unmasked "Hello": only servers send it */
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR, "unmasked client frame");
    s_free(&s);
}

static void recv_len16_not_minimal(void)
{
    stream_t s = {.rng = 19};
    static const uint8_t v[] = {0x82, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'};
    s_put(&s, v, sizeof(v));
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR, "length not minimally encoded");
    s_free(&s);
}

static void recv_len64_msb(void)
{
    stream_t s = {.rng = 20};
    static const uint8_t v[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0x05, 1, 2, 3, 4};
    s_put(&s, v, sizeof(v));
    expect_fail(SIZE_MAX, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR,
                "64-bit length with the high bit set");
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * UTF-8 in text messages (RFC 6455 §8.1: 1007)
 * ------------------------------------------------------------------------------------- */

static void recv_text_invalid_utf8(void)
{
    stream_t s = {.rng = 21};
    s_text(&s, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 ok");
    s_text(&s, "bad \xed\xa0\x80 surrogate");
    expect_fail(100, &s, 1, ADIEU_WS_FAIL_INVALID_UTF8, "invalid UTF-8 in a text message");
    s_free(&s);
}

/* A character split across fragments is fine; one that goes wrong across them is not. */
static void recv_text_invalid_utf8_across_fragments(void)
{
    stream_t s = {.rng = 22};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "ok \xf0\x9f", 5);
    s_frame(&s, ADIEU_WS_OP_PING, true, "", 0);
    s_frame(&s, ADIEU_WS_OP_CONT, false, "\x98", 1);
    /* U+1F600 needs one more continuation byte, not 'A'. */
    s_frame(&s, ADIEU_WS_OP_CONT, true, "A", 1);
    expect_fail(100, &s, 1, ADIEU_WS_FAIL_INVALID_UTF8, "invalid UTF-8 in a text message");
    s_free(&s);
}

/* "kosme" in one-byte fragments: every character split, the message valid. */
static void recv_text_valid_utf8_across_fragments(void)
{
    static const char kosme[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    stream_t s = {.rng = 23};
    size_t n = sizeof(kosme) - 1;
    for (size_t i = 0; i < n; i++) {
        s_frame(&s, i == 0 ? ADIEU_WS_OP_TEXT : ADIEU_WS_OP_CONT, i == n - 1, kosme + i, 1);
    }
    trace_t *t = check_splits(100, &s);
    CHECK(t->count == 1 && is_message(t, 0, ADIEU_WS_OP_TEXT, kosme, n));
    run_free(t);
    s_free(&s);
}

/* A text message that ends inside a character. */
static void recv_text_truncated_utf8(void)
{
    stream_t s = {.rng = 24};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "abc\xe2", 4);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "\x82", 1);
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_INVALID_UTF8, "text message ends inside a character");
    s_free(&s);
    stream_t one = {.rng = 25};
    s_text(&one, "\xf0\x9f\x98");
    expect_fail(100, &one, 0, ADIEU_WS_FAIL_INVALID_UTF8, "text message ends inside a character");
    s_free(&one);
}

/* Fail fast: a frame announcing 1000 bytes whose third byte is impossible fails as soon as
 * that byte arrives, without the other 997. */
static void recv_text_fails_fast(void)
{
    uint8_t payload[1000];
    memset(payload, 'a', sizeof(payload));
    payload[2] = 0xc0;
    stream_t s = {.rng = 26};
    s_frame(&s, ADIEU_WS_OP_TEXT, true, payload, sizeof(payload));
    size_t header = s.n - sizeof(payload);
    trace_t *t = run(2000, s.b, header + 3, SPLIT_WHOLE, 0, 0);
    CHECK(t->count == 1 &&
          is_fail(t, ADIEU_WS_FAIL_INVALID_UTF8, 1007, "invalid UTF-8 in a text message"));
    run_free(t);
    t = run(2000, s.b, header + 2, SPLIT_WHOLE, 0, 0);
    CHECK_EQ(t->count, 0);
    run_free(t);
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * The message size limit (1009)
 * ------------------------------------------------------------------------------------- */

static void recv_too_big_single_frame(void)
{
    stream_t s = {.rng = 27};
    s_text(&s, "0123456789");
    s_text(&s, "0123456789A");
    expect_fail(10, &s, 1, ADIEU_WS_FAIL_TOO_BIG, "message too big");
    s_free(&s);
}

/* The limit applies to the running total of a fragmented message, exactly at max. */
static void recv_too_big_running_total(void)
{
    stream_t s = {.rng = 28};
    s_frame(&s, ADIEU_WS_OP_BINARY, false, "012345", 6);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "6789", 4);
    s_frame(&s, ADIEU_WS_OP_BINARY, false, "012345", 6);
    s_frame(&s, ADIEU_WS_OP_CONT, false, "", 0);
    s_frame(&s, ADIEU_WS_OP_CONT, false, "6789", 4);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "A", 1);
    expect_fail(10, &s, 1, ADIEU_WS_FAIL_TOO_BIG, "message too big");
    s_free(&s);
}

/* A huge declared length fails on the header alone: nothing is allocated or read. */
static void recv_too_big_before_buffering(void)
{
    static const uint8_t v[] = {0x82, 0xff, 0x00, 0x00, 0x01, 0x00, 0, 0, 0, 0, 1, 2, 3, 4};
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 16 * MIB);
    trace_t t = {.ok = true};
    feed(&c, &t, v, sizeof(v), true);
    CHECK(t.count == 1 && t.ev[0].type == ADIEU_WS_EV_FAIL && t.ev[0].code == 1009);
    CHECK(c.assembly.data == NULL);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    /* A message of exactly max_message bytes is accepted; max 0 allows only empty ones. */
    stream_t s = {.rng = 29};
    s_frame(&s, ADIEU_WS_OP_BINARY, true, "", 0);
    s_frame(&s, ADIEU_WS_OP_BINARY, true, "x", 1);
    expect_fail(0, &s, 1, ADIEU_WS_FAIL_TOO_BIG, "message too big");
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * The peer's close (RFC 6455 §5.5.1, §7.4)
 * ------------------------------------------------------------------------------------- */

/* An empty close is reported as 1005 and echoed empty (1005 may not be sent, §7.4.1). */
static void recv_close_empty(void)
{
    stream_t s = {.rng = 30};
    s_close(&s, -1, NULL, 0);
    trace_t *t = check_splits(100, &s);
    CHECK(t->count == 1 && is_close(t, 0, 1005, ""));
    output_is(t, "\x88\x00", 2);
    CHECK_EQ(t->state, ADIEU_WS_CLOSED);
    run_free(t);
    s_free(&s);
}

/* Every valid code is reported and echoed, reason not echoed. */
static void recv_close_valid_codes(void)
{
    for (unsigned code = 0; code <= 0xffff; code++) {
        if (!adieu_ws_close_code_valid(code)) {
            continue;
        }
        stream_t s = {.rng = code};
        s_close(&s, code, "bye", 3);
        trace_t *t = code % 500 == 0 || code < 1020 ? check_splits(100, &s)
                                                    : run(100, s.b, s.n, SPLIT_WHOLE, 0, 0);
        uint8_t echo[4] = {0x88, 0x02, (uint8_t)(code >> 8), (uint8_t)code};
        bool ok = CHECK(t->count == 1) && is_close(t, 0, code, "bye") && output_is(t, echo, 4);
        run_free(t);
        s_free(&s);
        if (!ok) {
            fprintf(stderr, "  code %u\n", code);
            return;
        }
    }
}

/* Codes that may not be received, class by class (RFC 6455 §7.4.1, §7.4.2). */
static void expect_bad_code(unsigned code)
{
    stream_t s = {.rng = code};
    s_close(&s, code, "", 0);
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR, "invalid close code");
    s_free(&s);
}

static void recv_close_bad_code_1005(void)
{
    expect_bad_code(1005);
}

static void recv_close_bad_code_1006(void)
{
    expect_bad_code(1006);
}

static void recv_close_bad_code_1004(void)
{
    expect_bad_code(1004);
}

static void recv_close_bad_code_1015(void)
{
    expect_bad_code(1015);
}

static void recv_close_bad_code_below_1000(void)
{
    expect_bad_code(0);
    expect_bad_code(999);
}

static void recv_close_bad_code_unassigned(void)
{
    expect_bad_code(1016);
    expect_bad_code(2000);
    expect_bad_code(2999);
}

static void recv_close_bad_code_above_4999(void)
{
    expect_bad_code(5000);
    expect_bad_code(65535);
}

/* Every invalid code in the 16-bit range, whole input only. */
static void recv_close_bad_code_all(void)
{
    for (unsigned code = 0; code <= 0xffff; code++) {
        if (adieu_ws_close_code_valid(code)) {
            continue;
        }
        stream_t s = {.rng = code};
        s_close(&s, code, "", 0);
        trace_t *t = run(100, s.b, s.n, SPLIT_WHOLE, 0, 0);
        bool ok = CHECK(t->count == 1) &&
                  is_fail(t, ADIEU_WS_FAIL_PROTOCOL_ERROR, 1002, "invalid close code");
        run_free(t);
        s_free(&s);
        if (!ok) {
            fprintf(stderr, "  code %u\n", code);
            return;
        }
    }
}

/* RFC 6455 §5.5.1: a body is a 2-byte code and a reason; one byte is neither. */
static void recv_close_1_byte(void)
{
    stream_t s = {.rng = 31};
    s_frame(&s, ADIEU_WS_OP_CLOSE, true, "\x03", 1);
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_PROTOCOL_ERROR, "close frame with a 1-byte payload");
    s_free(&s);
}

static void recv_close_invalid_utf8_reason(void)
{
    stream_t s = {.rng = 32};
    s_close(&s, 1000, "bye \xc0\xaf", 6);
    expect_fail(100, &s, 0, ADIEU_WS_FAIL_INVALID_UTF8, "invalid UTF-8 in a close reason");
    s_free(&s);
    stream_t cut = {.rng = 33};
    s_close(&cut, 1000, "\xce", 1);
    expect_fail(100, &cut, 0, ADIEU_WS_FAIL_INVALID_UTF8, "invalid UTF-8 in a close reason");
    s_free(&cut);
}

static void recv_close_reason_valid(void)
{
    char reason[124];
    memset(reason, 'r', 123);
    memcpy(reason, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
    reason[123] = '\0';
    stream_t s = {.rng = 34};
    s_close(&s, 4000, reason, 123);
    trace_t *t = check_splits(100, &s);
    CHECK(t->count == 1 && is_close(t, 0, 4000, reason));
    output_is(t, "\x88\x02\x0f\xa0", 4);
    run_free(t);
    s_free(&s);
}

/* RFC 6455 §1.4: after the peer's close, further data is discarded: a message half done, and
 * anything after the close frame, valid or not. */
static void recv_after_close_discarded(void)
{
    stream_t s = {.rng = 35};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "half", 4);
    s_close(&s, 1001, "", 0);
    s_text(&s, "after");
    s_frame(&s, ADIEU_WS_OP_PING, true, "p", 1);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff};
    s_put(&s, garbage, sizeof(garbage));
    trace_t *t = check_splits(100, &s);
    CHECK(t->count == 1 && is_close(t, 0, 1001, ""));
    output_is(t, "\x88\x02\x03\xe9", 4);
    CHECK_EQ(t->state, ADIEU_WS_CLOSED);
    run_free(t);
    s_free(&s);
}

/* The close handshake started by the peer: REMOTE_CLOSING until our echo is taken, then
 * CLOSED and done; taking the echo a byte at a time completes it on the last byte. */
static void recv_close_then_output(void)
{
    stream_t s = {.rng = 36};
    s_close(&s, 1000, "", 0);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, s.n, false);
    CHECK(t.count == 1 && is_close(&t, 0, 1000, ""));
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_REMOTE_CLOSING);
    CHECK(!adieu_ws_conn_done(&c));
    CHECK(!adieu_ws_conn_close_expected(&c));
    uint8_t echo[8];
    size_t got = 0;
    const uint8_t *p;
    size_t n;
    while ((n = adieu_ws_conn_output(&c, &p)) > 0 && got < sizeof(echo)) {
        CHECK(!adieu_ws_conn_done(&c));
        echo[got++] = p[0];
        adieu_ws_conn_output_consume(&c, 1);
    }
    CHECK(got == 4 && memcmp(echo, "\x88\x02\x03\xe8", 4) == 0);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_CLOSED);
    CHECK(adieu_ws_conn_done(&c));
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), ADIEU_EINVALID_STATE);
    uint8_t head[10];
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_TEXT, 1, head), ADIEU_EINVALID_STATE);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * Our close (LOCAL_CLOSING)
 * ------------------------------------------------------------------------------------- */

static void send_close_then_peer_close(void)
{
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK(!adieu_ws_conn_close_expected(&c));
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1001, "going away", 10), 0);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_LOCAL_CLOSING);
    CHECK(adieu_ws_conn_close_expected(&c));
    trace_t t = {.ok = true};
    take_output(&c, &t);
    output_is(&t, "\x88\x0c\x03\xe9going away", 14);
    CHECK(!adieu_ws_conn_done(&c));
    stream_t s = {.rng = 37};
    s_close(&s, 1001, "", 0);
    feed(&c, &t, s.b, s.n, true);
    CHECK(t.count == 1 && is_close(&t, 0, 1001, ""));
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_CLOSED);
    CHECK(adieu_ws_conn_done(&c));
    CHECK(!adieu_ws_conn_close_expected(&c));
    /* Nothing is echoed: our close was the answer. */
    CHECK_EQ(t.out_len, 14);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* The peer's close may come before we took our own close frame: done only once it is. */
static void send_close_crossing(void)
{
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    stream_t s = {.rng = 38};
    s_close(&s, 1000, "", 0);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, s.n, false);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_CLOSED);
    CHECK(!adieu_ws_conn_done(&c));
    take_output(&c, &t);
    output_is(&t, "\x88\x02\x03\xe8", 4);
    CHECK(adieu_ws_conn_done(&c));
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* After our close, data messages are checked but not delivered, pings get no pong, and only
 * the peer's close completes the handshake. */
static void send_close_discards_messages(void)
{
    stream_t s = {.rng = 39};
    s_text(&s, "late");
    s_frame(&s, ADIEU_WS_OP_TEXT, true, "", 0);
    s_frame(&s, ADIEU_WS_OP_BINARY, false, "frag", 4);
    s_frame(&s, ADIEU_WS_OP_PING, true, "p", 1);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "ment", 4);
    /* Not checked any more: invalid text and an over-limit message, since neither is read. */
    s_text(&s, "\xff");
    uint8_t big[200];
    memset(big, 'b', sizeof(big));
    s_frame(&s, ADIEU_WS_OP_BINARY, true, big, sizeof(big));
    s_close(&s, 1000, "", 0);
    for (int kind = 0; kind < 3; kind++) {
        for (size_t cut = 1; cut < s.n; cut += (kind == 2 ? 1 : s.n)) {
            adieu_ws_conn_t c;
            adieu_ws_conn_init(&c, 100);
            CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "bye", 3), 0);
            trace_t t = {.ok = true};
            take_output(&c, &t);
            feed_stream(&c, &t, s.b, s.n,
                        kind == 0   ? SPLIT_WHOLE
                        : kind == 1 ? SPLIT_BYTES
                                    : SPLIT_AT,
                        cut, 0);
            CHECK_EQ(t.count, 2);
            is_event(&t, 0, ADIEU_WS_EV_PING, "p", 1);
            is_close(&t, 1, 1000, "");
            output_is(&t,
                      "\x88\x05\x03\xe8"
                      "bye",
                      7);
            CHECK(adieu_ws_conn_done(&c));
            CHECK(c.assembly.data == NULL);
            trace_free(&t);
            adieu_ws_conn_free(&c);
        }
    }
    s_free(&s);
}

/* A message half received when we close is dropped, not delivered when it completes. */
static void send_close_mid_message(void)
{
    stream_t s = {.rng = 40};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    size_t first = s.n;
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    s_close(&s, 1000, "", 0);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, first, true);
    CHECK(c.assembly.data != NULL);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    feed(&c, &t, s.b + first, s.n - first, true);
    CHECK(t.count == 1 && is_close(&t, 0, 1000, ""));
    CHECK(c.assembly.data == NULL);
    CHECK(adieu_ws_conn_done(&c));
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* A violation after our close fails the connection without a second close frame. */
static void fail_in_local_closing(void)
{
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    trace_t t = {.ok = true};
    take_output(&c, &t);
    stream_t s = {.rng = 41};
    s_frame(&s, ADIEU_WS_OP_CONT, true, "x", 1);
    feed(&c, &t, s.b, s.n, true);
    CHECK(t.count == 1 && t.ev[0].type == ADIEU_WS_EV_FAIL && t.ev[0].code == 1002);
    output_is(&t, "\x88\x02\x03\xe8", 4);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_FAILED);
    CHECK(!adieu_ws_conn_close_expected(&c));
    CHECK(!adieu_ws_conn_done(&c));
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

static void send_close_twice(void)
{
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), ADIEU_EINVALID_STATE);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1001, "x", 1), ADIEU_EINVALID_STATE);
    trace_t t = {.ok = true};
    take_output(&c, &t);
    output_is(&t, "\x88\x02\x03\xe8", 4);
    adieu_ws_conn_free(&c);
}

/* Codes that may not be sent, and reasons that are too long or not UTF-8, are refused and
 * change nothing. */
static void send_close_invalid(void)
{
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 2999, 5000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ(adieu_ws_conn_send_close(&c, bad[i], "", 0), ADIEU_EINVAL);
    }
    char reason[124];
    memset(reason, 'r', sizeof(reason));
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, reason, 124), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "\xc0\x80", 2), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_OPEN);
    const uint8_t *p;
    CHECK_EQ(adieu_ws_conn_output(&c, &p), 0);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, reason, 123), 0);
    CHECK_EQ(adieu_ws_conn_output(&c, &p), 2 + 125);
    adieu_ws_conn_free(&c);
}

/* Headers of our data frames, and no data after a close, sent or received, or a failure. */
static void send_after_close(void)
{
    uint8_t h[10];
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_TEXT, 5, h), 2);
    CHECK_MEM_EQ(h, "\x81\x05", 2);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_BINARY, 70000, h), 10);
    CHECK_MEM_EQ(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_PING, 4, h), 2);
    CHECK_MEM_EQ(h, "\x89\x04", 2);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_PONG, 0, h), 2);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_PING, 126, h), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_CLOSE, 2, h), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_CONT, 2, h), ADIEU_EINVAL);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_TEXT, 5, h), ADIEU_EINVALID_STATE);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_PING, 0, h), ADIEU_EINVALID_STATE);
    adieu_ws_conn_free(&c);

    stream_t s = {.rng = 42};
    s_close(&s, 1000, "", 0);
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, s.n, false);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_TEXT, 5, h), ADIEU_EINVALID_STATE);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);

    s.rng = 43;
    s_frame(&s, ADIEU_WS_OP_CONT, true, "", 0);
    adieu_ws_conn_init(&c, 100);
    t.ok = true;
    feed(&c, &t, s.b, s.n, false);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_FAILED);
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_TEXT, 5, h), ADIEU_EINVALID_STATE);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), ADIEU_EINVALID_STATE);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * Output order, failures, end of stream, storage
 * ------------------------------------------------------------------------------------- */

/* A pong queued before our close goes out before it; none is queued after it. */
static void output_pong_before_close(void)
{
    stream_t s = {.rng = 44};
    s_frame(&s, ADIEU_WS_OP_PING, true, "a", 1);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, s.n, false);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    feed(&c, &t, s.b, s.n, false);
    take_output(&c, &t);
    output_is(&t,
              "\x8a\x01"
              "a\x88\x02\x03\xe8",
              7);
    CHECK_EQ(t.count, 2);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* A partly taken pong is finished before the pong of a newer ping. */
static void output_partial_pong(void)
{
    stream_t s = {.rng = 45};
    s_frame(&s, ADIEU_WS_OP_PING, true, "first", 5);
    size_t one = s.n;
    s_frame(&s, ADIEU_WS_OP_PING, true, "second", 6);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, one, false);
    const uint8_t *p;
    CHECK_EQ(adieu_ws_conn_output(&c, &p), 7);
    adieu_ws_conn_output_consume(&c, 3);
    feed(&c, &t, s.b + one, s.n - one, false);
    CHECK_EQ(adieu_ws_conn_output(&c, &p), 4);
    CHECK_MEM_EQ(p, "irst", 4);
    adieu_ws_conn_output_consume(&c, 4);
    take_output(&c, &t);
    output_is(&t, "\x8a\x06second", 8);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* After a failure everything is discarded: no event, no output beyond the one close. */
static void fail_is_terminal(void)
{
    stream_t s = {.rng = 46};
    s_frame(&s, ADIEU_WS_OP_CONT, true, "", 0);
    size_t bad = s.n;
    s_text(&s, "valid");
    s_frame(&s, ADIEU_WS_OP_PING, true, "p", 1);
    s_close(&s, 1000, "", 0);
    trace_t *t = check_splits(100, &s);
    CHECK_EQ(t->count, 1);
    is_fail(t, ADIEU_WS_FAIL_PROTOCOL_ERROR, 1002, "continuation without a message");
    CHECK_EQ(t->out_len, 4 + strlen("continuation without a message"));
    run_free(t);
    /* The failing call consumes its whole input: nothing after the violation is parsed. */
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    uint8_t *in = guard_copy(s.b, s.n);
    adieu_ws_event_t ev;
    size_t used;
    CHECK_EQ(adieu_ws_conn_recv(&c, in, s.n, &used, &ev), 1);
    CHECK_EQ(used, s.n);
    CHECK(bad < s.n);
    CHECK_EQ(adieu_ws_conn_recv(&c, in, s.n, &used, &ev), 0);
    CHECK_EQ(used, s.n);
    CHECK_EQ(adieu_ws_conn_eof(&c), 0);
    CHECK(!adieu_ws_conn_done(&c));
    guard_free(in, s.n);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* End of stream: clean between messages, truncated inside a header, a payload or a
 * fragmented message; clean after a close or a failure. */
static void eof_truncated(void)
{
    stream_t s = {.rng = 47};
    s_text(&s, "abc");
    size_t one = s.n;
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "de", 2);
    size_t two = s.n;
    s_frame(&s, ADIEU_WS_OP_CONT, true, "f", 1);
    for (size_t k = 0; k <= s.n; k++) {
        adieu_ws_conn_t c;
        adieu_ws_conn_init(&c, 100);
        trace_t t = {.ok = true};
        feed(&c, &t, s.b, k, true);
        bool between = k == 0 || k == one || k == s.n;
        if (!CHECK_EQ(adieu_ws_conn_eof(&c), between ? 0 : ADIEU_ETRUNCATED)) {
            fprintf(stderr, "  eof after %zu bytes (message 2 from %zu to %zu)\n", k, one, two);
        }
        trace_free(&t);
        adieu_ws_conn_free(&c);
    }
    stream_t cl = {.rng = 48};
    s_close(&cl, 1000, "", 0);
    s_put(&cl, "\x81", 1);
    trace_t *t = run(100, cl.b, cl.n, SPLIT_WHOLE, 0, 0);
    CHECK_EQ(t->count, 1);
    run_free(t);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t tr = {.ok = true};
    feed(&c, &tr, cl.b, cl.n, true);
    CHECK_EQ(adieu_ws_conn_eof(&c), 0);
    trace_free(&tr);
    adieu_ws_conn_free(&c);
    s_free(&cl);
    s_free(&s);
}

/* An assembled message's bytes are released by the next call, even an empty one, and its
 * storage is kept for the next message until adieu_ws_conn_trim() frees it; a message in
 * place never allocates. */
static void assembly_kept_until_trim(void)
{
    stream_t s = {.rng = 49};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    uint8_t *in = guard_copy(s.b, s.n);
    adieu_ws_event_t ev;
    size_t used;
    CHECK_EQ(adieu_ws_conn_recv(&c, in, s.n, &used, &ev), 1);
    CHECK(ev.type == ADIEU_WS_EV_MESSAGE && ev.len == 5 && memcmp(ev.data, "Hello", 5) == 0);
    CHECK(c.assembly.data != NULL && ev.data == c.assembly.data);
    CHECK_EQ(used, s.n);
    CHECK_EQ(adieu_ws_conn_recv(&c, NULL, 0, &used, &ev), 0);
    CHECK(c.assembly.data != NULL && adieu_buf_size(&c.assembly) == 0 && c.assembly.cap > 0);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data == NULL && c.assembly.cap == 0);
    guard_free(in, s.n);
    stream_t w = {.rng = 50};
    s_text(&w, "whole");
    in = guard_copy(w.b, w.n);
    CHECK_EQ(adieu_ws_conn_recv(&c, in, w.n, &used, &ev), 1);
    CHECK(ev.data == in + w.n - 5 && c.assembly.data == NULL);
    guard_free(in, w.n);
    adieu_ws_conn_free(&c);
    s_free(&w);
    s_free(&s);
}

/* With a pool, trim hands the storage to it and the next message to assemble takes it back:
 * nothing held between messages, nothing allocated per message. */
static void assembly_trim_gives_to_the_pool(void)
{
    adieu_buf_pool_t pool = {.max_bytes = 1 << 20, .max_block = 1 << 16};
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    c.pool = &pool;
    uint8_t *storage = NULL;
    for (int round = 0; round < 3; round++) {
        stream_t s = {.rng = (uint64_t)(51 + round)};
        s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
        s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
        uint8_t *in = guard_copy(s.b, s.n);
        adieu_ws_event_t ev;
        size_t used;
        CHECK_EQ(adieu_ws_conn_recv(&c, in, s.n, &used, &ev), 1);
        CHECK(ev.type == ADIEU_WS_EV_MESSAGE && ev.len == 5 && memcmp(ev.data, "Hello", 5) == 0);
        if (round == 0)
            storage = c.assembly.data;
        CHECK(c.assembly.data == storage && storage != NULL);
        CHECK(pool.head == NULL);
        CHECK_EQ(adieu_ws_conn_recv(&c, NULL, 0, &used, &ev), 0);
        adieu_ws_conn_trim(&c);
        CHECK(c.assembly.data == NULL);
        CHECK(pool.head == storage);
        guard_free(in, s.n);
        s_free(&s);
    }
    adieu_ws_conn_free(&c);
    adieu_buf_pool_free(&pool);
}

/* A message assembled across reads survives adieu_ws_conn_trim() between them, whether it is
 * cut inside a fragment of a fragmented message or inside a single frame. */
static void assembly_trim_keeps_message_in_progress(void)
{
    stream_t s = {.rng = 52};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    size_t first = s.n;
    s_text(&s, "world");
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, first - 1, true);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data != NULL && adieu_buf_size(&c.assembly) == 4);
    /* The rest of "Hello", and "world" up to the middle of its payload. */
    feed(&c, &t, s.b + first - 1, s.n - first - 2, true);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data != NULL && adieu_buf_size(&c.assembly) == 2);
    feed(&c, &t, s.b + s.n - 3, 3, true);
    CHECK(t.ok && t.count == 2);
    is_message(&t, 0, ADIEU_WS_OP_TEXT, "Hello", 5);
    is_message(&t, 1, ADIEU_WS_OP_TEXT, "world", 5);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data == NULL);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* A read that ends inside the header of the next frame is not between messages: the storage
 * stays for the message that frame may start. */
static void assembly_trim_keeps_partial_header(void)
{
    stream_t s = {.rng = 53};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    size_t first = s.n;
    s_frame(&s, ADIEU_WS_OP_BINARY, false, "ab", 2);
    s_frame(&s, ADIEU_WS_OP_CONT, true, "c", 1);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, first + 1, true);
    CHECK_EQ(t.count, 1);
    uint8_t *kept = c.assembly.data;
    adieu_ws_conn_trim(&c);
    CHECK(kept != NULL && c.assembly.data == kept);
    feed(&c, &t, s.b + first + 1, s.n - first - 1, true);
    CHECK(t.ok && t.count == 2);
    is_message(&t, 1, ADIEU_WS_OP_BINARY, "abc", 3);
    CHECK(c.assembly.data == kept);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data == NULL);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* Once we sent our close, messages are no longer delivered: trim frees the storage even in
 * the middle of one, and the rest of it is dropped unseen. */
static void assembly_trim_after_close(void)
{
    stream_t s = {.rng = 54};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    size_t first = s.n;
    s_frame(&s, ADIEU_WS_OP_CONT, true, "lo", 2);
    s_close(&s, 1000, "", 0);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, first, true);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data != NULL);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data == NULL);
    feed(&c, &t, s.b + first, s.n - first, true);
    CHECK(t.count == 1 && is_close(&t, 0, 1000, ""));
    CHECK(c.assembly.data == NULL && adieu_ws_conn_done(&c));
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* Storage over 64 KiB, left by a big assembled message, is freed by the next call without a
 * trim; a small message's is kept. */
static void assembly_large_storage_released(void)
{
    static const size_t sizes[] = {1000, 100000};
    for (size_t k = 0; k < 2; k++) {
        size_t n = sizes[k];
        uint8_t *msg = malloc(n);
        if (!CHECK(msg != NULL)) {
            return;
        }
        memset(msg, 'x', n);
        stream_t s = {.rng = 55 + k};
        s_frame(&s, ADIEU_WS_OP_BINARY, false, msg, n / 2);
        s_frame(&s, ADIEU_WS_OP_CONT, true, msg + n / 2, n - n / 2);
        adieu_ws_conn_t c;
        adieu_ws_conn_init(&c, MIB);
        trace_t t = {.ok = true};
        feed(&c, &t, s.b, s.n, true);
        CHECK(t.ok && t.count == 1);
        is_message(&t, 0, ADIEU_WS_OP_BINARY, msg, n);
        CHECK_EQ(c.assembly.data != NULL, n <= 64 * 1024);
        trace_free(&t);
        adieu_ws_conn_free(&c);
        s_free(&s);
        free(msg);
    }
}

/* Allocations made through adieu's allocator, for the steady-state scenarios below. */
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

/* Issue 5: no allocation per message on the steady-state path. Messages that each straddle
 * two reads, trimmed after every read as the I/O layer does, allocate once, for the first. */
static void assembly_no_allocation_per_split_message(void)
{
    enum { COUNT = 200, PAYLOAD = 1000 };
    uint8_t payload[PAYLOAD];
    for (size_t i = 0; i < PAYLOAD; i++) {
        payload[i] = (uint8_t)('a' + i % 26);
    }
    stream_t s = {.rng = 57};
    for (size_t k = 0; k < COUNT; k++) {
        s_frame(&s, ADIEU_WS_OP_TEXT, true, payload, PAYLOAD);
    }
    size_t frame = s.n / COUNT;
    CHECK_EQ(adieu_replace_allocator(counting_malloc, counting_realloc, counting_calloc, free), 0);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, MIB);
    trace_t t = {.ok = true};
    /* Reads of one frame each, from the middle of a frame to the middle of the next. */
    size_t off = 0;
    size_t after_first = 0;
    for (size_t end = frame / 2; off < s.n && t.ok; end += frame) {
        size_t stop = end < s.n ? end : s.n;
        feed(&c, &t, s.b + off, stop - off, true);
        adieu_ws_conn_trim(&c);
        off = stop;
        if (t.count == 1 && after_first == 0) {
            after_first = allocations;
        }
    }
    CHECK(t.ok && t.count == COUNT);
    for (size_t k = 0; k < t.count; k++) {
        is_message(&t, k, ADIEU_WS_OP_TEXT, payload, PAYLOAD);
        CHECK(!t.ev[k].in_place);
    }
    CHECK_EQ(after_first, 1);
    CHECK_EQ(allocations, after_first);
    adieu_ws_conn_trim(&c);
    CHECK(c.assembly.data == NULL);
    adieu_ws_conn_free(&c);
    CHECK_EQ(adieu_replace_allocator(malloc, realloc, calloc, free), 0);
    trace_free(&t);
    s_free(&s);
}

/* Fragmented messages in one read: a hundred of them allocate what the first one alone does. */
static void assembly_no_allocation_per_fragmented_message(void)
{
    enum { COUNT = 100, PIECE = 300 };
    uint8_t piece[PIECE];
    memset(piece, 'y', sizeof(piece));
    stream_t one = {.rng = 58};
    s_frame(&one, ADIEU_WS_OP_BINARY, false, piece, PIECE);
    s_frame(&one, ADIEU_WS_OP_CONT, false, piece, PIECE);
    s_frame(&one, ADIEU_WS_OP_CONT, true, piece, PIECE);
    stream_t many = {.rng = 59};
    for (size_t k = 0; k < COUNT; k++) {
        s_put(&many, one.b, one.n);
    }
    CHECK_EQ(adieu_replace_allocator(counting_malloc, counting_realloc, counting_calloc, free), 0);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, MIB);
    trace_t t = {.ok = true};
    size_t before = allocations;
    feed(&c, &t, one.b, one.n, true);
    adieu_ws_conn_trim(&c);
    size_t first = allocations - before;
    CHECK(first > 0 && c.assembly.data == NULL);
    before = allocations;
    feed(&c, &t, many.b, many.n, true);
    CHECK_EQ(allocations - before, first);
    CHECK(t.ok && t.count == 1 + COUNT);
    adieu_ws_conn_free(&c);
    CHECK_EQ(adieu_replace_allocator(malloc, realloc, calloc, free), 0);
    trace_free(&t);
    s_free(&one);
    s_free(&many);
}

/* ---------------------------------------------------------------------------------------
 * The control block
 * ------------------------------------------------------------------------------------- */

/* A ping whole in the input is delivered in place; only its pong's payload, which outlives
 * the call, goes to the control block, and trimming frees the block once the pong is taken.
 * An empty ping, a pong and a close whole in the input never need the block. */
static void ctl_whole_ping_in_place(void)
{
    stream_t s = {.rng = 70};
    s_frame(&s, ADIEU_WS_OP_PING, true, "Hello", 5);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK(c.ctl == NULL);
    uint8_t *in = guard_copy(s.b, s.n);
    adieu_ws_event_t ev;
    size_t used;
    CHECK_EQ(adieu_ws_conn_recv(&c, in, s.n, &used, &ev), 1);
    CHECK(ev.type == ADIEU_WS_EV_PING && ev.len == 5 && memcmp(ev.data, "Hello", 5) == 0);
    CHECK(ev.data == in + s.n - 5);
    CHECK(c.ctl != NULL);
    /* The pong is owed: trimming now keeps the block. */
    adieu_ws_conn_trim(&c);
    CHECK(c.ctl != NULL);
    trace_t t = {.ok = true};
    take_output(&c, &t);
    output_is(&t, "\x8a\x05Hello", 7);
    CHECK_EQ(adieu_ws_conn_recv(&c, NULL, 0, &used, &ev), 0);
    adieu_ws_conn_trim(&c);
    CHECK(c.ctl == NULL);
    guard_free(in, s.n);

    stream_t o = {.rng = 71};
    s_frame(&o, ADIEU_WS_OP_PING, true, "", 0);
    s_frame(&o, ADIEU_WS_OP_PONG, true, "pong", 4);
    s_close(&o, 1000, "bye", 3);
    t.out_len = 0;
    feed(&c, &t, o.b, o.n, true);
    CHECK(t.ok && t.count == 3);
    is_event(&t, 0, ADIEU_WS_EV_PING, "", 0);
    is_event(&t, 1, ADIEU_WS_EV_PONG, "pong", 4);
    CHECK(t.ev[1].in_place && t.ev[2].in_place);
    is_close(&t, 2, 1000, "bye");
    output_is(&t, "\x8a\x00\x88\x02\x03\xe8", 6);
    CHECK(c.ctl == NULL && adieu_ws_conn_done(&c));
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&o);
    s_free(&s);
}

/* A ping split across two inputs, at every offset, with a trim between them as after each
 * read: the first part is kept in the control block, and the event and pong are the same. */
static void ctl_split_ping(void)
{
    stream_t s = {.rng = 72};
    s_frame(&s, ADIEU_WS_OP_PING, true, "Hello", 5);
    for (size_t cut = 1; cut < s.n; cut++) {
        adieu_ws_conn_t c;
        adieu_ws_conn_init(&c, 100);
        trace_t t = {.ok = true};
        feed(&c, &t, s.b, cut, true);
        adieu_ws_conn_trim(&c);
        CHECK_EQ(t.count, 0);
        /* Inside the payload (after the 2-byte header and 4-byte key) the bytes so far are
         * kept; inside the header nothing is. */
        CHECK_EQ(c.ctl != NULL, cut > 6);
        feed(&c, &t, s.b + cut, s.n - cut, true);
        CHECK(t.ok && t.count == 1);
        is_event(&t, 0, ADIEU_WS_EV_PING, "Hello", 5);
        CHECK_EQ(t.ev[0].in_place, cut <= 6);
        output_is(&t, "\x8a\x05Hello", 7);
        adieu_ws_conn_trim(&c);
        CHECK(c.ctl == NULL);
        trace_free(&t);
        adieu_ws_conn_free(&c);
    }
    s_free(&s);
}

/* A close frame with a reason, fed one byte at a time with a trim after each: the peer's code
 * and reason, the echo, the handshake complete, and no block left. */
static void ctl_close_split_bytes(void)
{
    stream_t s = {.rng = 73};
    s_close(&s, 1001, "going away", 10);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    for (size_t i = 0; i < s.n && t.ok; i++) {
        feed(&c, &t, s.b + i, 1, false);
        adieu_ws_conn_trim(&c);
        CHECK_EQ(c.ctl != NULL, i >= 6 && i + 1 < s.n);
    }
    CHECK(t.ok && t.count == 1);
    is_close(&t, 0, 1001, "going away");
    CHECK(!t.ev[0].in_place);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_REMOTE_CLOSING);
    take_output(&c, &t);
    output_is(&t, "\x88\x02\x03\xe9", 4);
    CHECK(adieu_ws_conn_done(&c));
    adieu_ws_conn_trim(&c);
    CHECK(c.ctl == NULL);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* Our close frame with a reason lives in the block until it is taken in full; a close with
 * the code alone never needs it. */
static void ctl_send_close_until_taken(void)
{
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1001, "going away", 10), 0);
    CHECK(c.ctl != NULL);
    adieu_ws_conn_trim(&c);
    CHECK(c.ctl != NULL);
    const uint8_t *p;
    CHECK_EQ(adieu_ws_conn_output(&c, &p), 14);
    adieu_ws_conn_output_consume(&c, 13);
    adieu_ws_conn_trim(&c);
    CHECK(c.ctl != NULL);
    CHECK_EQ(adieu_ws_conn_output(&c, &p), 1);
    CHECK_EQ(p[0], 'y');
    adieu_ws_conn_output_consume(&c, 1);
    adieu_ws_conn_trim(&c);
    CHECK(c.ctl == NULL);
    adieu_ws_conn_free(&c);

    adieu_ws_conn_init(&c, 100);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1000, "", 0), 0);
    CHECK(c.ctl == NULL);
    trace_t t = {.ok = true};
    take_output(&c, &t);
    output_is(&t, "\x88\x02\x03\xe8", 4);
    adieu_ws_conn_free(&c);
}

/* An allocator whose next alloc_failures allocations fail (< 0: every one), the later ones
 * succeed. */
static long alloc_failures;

static bool may_allocate(void)
{
    allocations++;
    if (alloc_failures == 0) {
        return true;
    }
    if (alloc_failures > 0) {
        alloc_failures--;
    }
    return false;
}

static void *failing_malloc(size_t size)
{
    return may_allocate() ? malloc(size) : NULL;
}

static void *failing_realloc(void *ptr, size_t size)
{
    return may_allocate() ? realloc(ptr, size) : NULL;
}

static void *failing_calloc(size_t count, size_t size)
{
    return may_allocate() ? calloc(count, size) : NULL;
}

static void fail_allocations(long n)
{
    alloc_failures = n;
    CHECK_EQ(adieu_replace_allocator(failing_malloc, failing_realloc, failing_calloc, free), 0);
}

/* Out of memory for the control block: a ping whose pong cannot be stored, or a control frame
 * split across inputs, fails the connection as SERVER_ERROR (1011), whole or split, and the
 * failure's close frame is sent with its reason when that allocation succeeds, with its code
 * alone when memory is out; our close with a reason is refused with ADIEU_ENOMEM, one with a
 * code alone still works; an empty ping and the peer's close need no memory. */
static void ctl_out_of_memory(void)
{
    stream_t s = {.rng = 74};
    s_frame(&s, ADIEU_WS_OP_PING, true, "Hello", 5);
    static const uint8_t bare[] = {0x88, 0x02, 0x03, 0xf3};
    /* Every allocation failing, or only the first (the pong's or the split frame's). */
    for (long failures = -1; failures <= 1; failures += 2) {
        /* Whole, then split inside the payload. */
        for (size_t cut = s.n; cut >= s.n - 1; cut--) {
            fail_allocations(failures);
            adieu_ws_conn_t c;
            adieu_ws_conn_init(&c, 100);
            trace_t t = {.ok = true};
            feed(&c, &t, s.b, cut, true);
            feed(&c, &t, s.b + cut, s.n - cut, true);
            t.state = adieu_ws_conn_state(&c);
            CHECK(t.ok && t.count == 1);
            CHECK_EQ(t.state, ADIEU_WS_FAILED);
            CHECK(t.ev[0].type == ADIEU_WS_EV_FAIL && t.ev[0].code == 1011 &&
                  t.ev[0].fail == ADIEU_WS_FAIL_SERVER_ERROR);
            CHECK(t.ev[0].detail != NULL && strcmp(t.ev[0].detail, "out of memory") == 0);
            if (failures < 0) {
                output_is(&t, bare, sizeof(bare));
            } else {
                output_is(&t, "\x88\x0f\x03\xf3out of memory", 17);
            }
            adieu_ws_conn_trim(&c);
            CHECK(c.ctl == NULL);
            trace_free(&t);
            adieu_ws_conn_free(&c);
        }
    }
    fail_allocations(-1);
    size_t before = allocations;
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1001, "going away", 10), ADIEU_ENOMEM);
    CHECK_EQ(adieu_ws_conn_state(&c), ADIEU_WS_OPEN);
    CHECK(!adieu_ws_conn_has_output(&c) && !adieu_ws_conn_close_expected(&c));
    stream_t e = {.rng = 75};
    s_frame(&e, ADIEU_WS_OP_PING, true, "", 0);
    trace_t t = {.ok = true};
    feed(&c, &t, e.b, e.n, true);
    CHECK(t.ok && t.count == 1);
    is_event(&t, 0, ADIEU_WS_EV_PING, "", 0);
    CHECK_EQ(adieu_ws_conn_send_close(&c, 1001, "", 0), 0);
    take_output(&c, &t);
    output_is(&t, "\x8a\x00\x88\x02\x03\xe9", 6);
    trace_free(&t);
    adieu_ws_conn_free(&c);

    adieu_ws_conn_init(&c, 100);
    stream_t cl = {.rng = 76};
    s_close(&cl, 1000, "bye", 3);
    t = (trace_t){.ok = true};
    feed(&c, &t, cl.b, cl.n, true);
    CHECK(t.ok && t.count == 1);
    is_close(&t, 0, 1000, "bye");
    output_is(&t, "\x88\x02\x03\xe8", 4);
    CHECK(adieu_ws_conn_done(&c));
    /* Only the refused close tried to allocate. */
    CHECK_EQ(allocations - before, 1);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    CHECK_EQ(adieu_replace_allocator(malloc, realloc, calloc, free), 0);
    s_free(&cl);
    s_free(&e);
    s_free(&s);
}

/* An idle, trimmed connection allocates nothing while it receives whole data frames, pongs
 * and empty pings (answered from the connection itself), read after read. */
static void ctl_no_allocation_idle(void)
{
    enum { READS = 200 };
    stream_t s = {.rng = 77};
    s_text(&s, "hello");
    s_frame(&s, ADIEU_WS_OP_PONG, true, "keep-alive", 10);
    s_frame(&s, ADIEU_WS_OP_BINARY, true, "\x01\x02\x03", 3);
    s_frame(&s, ADIEU_WS_OP_PING, true, "", 0);
    s_frame(&s, ADIEU_WS_OP_PONG, true, "", 0);
    CHECK_EQ(adieu_replace_allocator(counting_malloc, counting_realloc, counting_calloc, free), 0);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    adieu_ws_conn_trim(&c);
    size_t before = allocations;
    trace_t t = {.ok = true};
    for (size_t k = 0; k < READS && t.ok; k++) {
        t.out_len = 0;
        feed(&c, &t, s.b, s.n, true);
        adieu_ws_conn_trim(&c);
        CHECK_EQ(t.count, 5);
        output_is(&t, "\x8a\x00", 2);
        CHECK(t.ev[0].in_place && t.ev[1].in_place && t.ev[2].in_place);
        trace_free(&t);
    }
    CHECK_EQ(allocations - before, 0);
    CHECK(c.ctl == NULL && c.assembly.data == NULL);
    adieu_ws_conn_free(&c);
    CHECK_EQ(adieu_replace_allocator(malloc, realloc, calloc, free), 0);
    s_free(&s);
}

/* adieu_ws_conn_free() leaves a connection that discards input and refuses sends. */
static void conn_free_is_terminal(void)
{
    stream_t s = {.rng = 51};
    s_frame(&s, ADIEU_WS_OP_TEXT, false, "Hel", 3);
    s_frame(&s, ADIEU_WS_OP_PING, true, "p", 1);
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, 100);
    trace_t t = {.ok = true};
    feed(&c, &t, s.b, s.n, false);
    CHECK(c.ctl != NULL); /* the pong of "p" */
    adieu_ws_conn_free(&c);
    CHECK(c.assembly.data == NULL && c.ctl == NULL);
    const uint8_t *p;
    CHECK_EQ(adieu_ws_conn_output(&c, &p), 0);
    feed(&c, &t, s.b, s.n, false);
    CHECK_EQ(t.count, 1);
    uint8_t h[10];
    CHECK_EQ(adieu_ws_conn_send_header(&c, ADIEU_WS_OP_TEXT, 1, h), ADIEU_EINVALID_STATE);
    trace_free(&t);
    adieu_ws_conn_free(&c);
    s_free(&s);
}

/* ---------------------------------------------------------------------------------------
 * Large messages
 * ------------------------------------------------------------------------------------- */

/* A message of 1 MiB (exactly max_message) in fragments of random sizes (empty ones too),
 * with pings between them, fed in random splits: the message equals the original and every
 * ping is answered. For text, characters of every length are split across fragments. */
static void big_message(adieu_ws_opcode_t op, uint64_t seed)
{
    uint8_t *msg = malloc(MIB);
    if (!CHECK(msg != NULL)) {
        return;
    }
    uint64_t rng = seed;
    static const uint8_t chars[][4] = {
        {'a'}, {0xc3, 0xa9}, {0xe2, 0x82, 0xac}, {0xf0, 0x9f, 0x98, 0x80}};
    size_t n = 0;
    while (n < MIB) {
        uint64_t r = next_random(&rng);
        size_t k = op == ADIEU_WS_OP_TEXT ? (size_t)(r % 4) + 1 : 1;
        if (n + k > MIB) {
            k = 1;
        }
        memcpy(msg + n, op == ADIEU_WS_OP_TEXT ? chars[k - 1] : (const uint8_t *)&r, k);
        n += k;
    }
    stream_t s = {.rng = seed};
    size_t pings = 0;
    bool started = false;
    for (size_t off = 0; off < MIB;) {
        uint64_t r = next_random(&rng);
        static const size_t scale[] = {1, 50, 5000, 200000};
        size_t len = (size_t)((r >> 3) % scale[r & 3]);
        len = len < MIB - off ? len : MIB - off;
        s_frame(&s, started ? ADIEU_WS_OP_CONT : op, off + len == MIB, msg + off, len);
        started = true;
        off += len;
        if (off < MIB && (r & 0x30) == 0) {
            s_frame(&s, ADIEU_WS_OP_PING, true, &r, 8);
            pings++;
        }
    }
    for (uint64_t split = 0; split < 4; split++) {
        trace_t *t = run(MIB, s.b, s.n, split == 0 ? SPLIT_WHOLE : SPLIT_RANDOM, 0, seed + split);
        CHECK(t->ok);
        CHECK_EQ(t->count, pings + 1);
        if (t->count == pings + 1) {
            is_message(t, pings, op, msg, MIB);
        }
        CHECK_EQ(t->out_len, pings * 10);
        run_free(t);
    }
    /* One byte short of the limit, the same stream is too big. */
    trace_t *t = run(MIB - 1, s.b, s.n, SPLIT_WHOLE, 0, 0);
    CHECK(t->count > 0 && t->ev[t->count - 1].type == ADIEU_WS_EV_FAIL &&
          t->ev[t->count - 1].fail == ADIEU_WS_FAIL_TOO_BIG);
    run_free(t);
    s_free(&s);
    free(msg);
}

static void recv_1mib_binary_random_fragments(void)
{
    big_message(ADIEU_WS_OP_BINARY, 100);
    big_message(ADIEU_WS_OP_BINARY, 200);
}

static void recv_1mib_text_random_fragments(void)
{
    big_message(ADIEU_WS_OP_TEXT, 300);
    big_message(ADIEU_WS_OP_TEXT, 400);
}

/* Any input, valid or not: valid streams damaged at random (bits flipped, bytes replaced,
 * inserted or dropped) give well-formed events, never reach an assert, and give the same
 * trace however they are split. */
static void recv_mutated_streams(void)
{
    uint64_t rng = 6455;
    for (int iter = 0; iter < 3000; iter++) {
        stream_t s = {.rng = (uint64_t)iter};
        s_frame(&s, ADIEU_WS_OP_TEXT, false, "\xce\xba\xe1", 3);
        s_frame(&s, ADIEU_WS_OP_PING, true, "ping", 4);
        s_frame(&s, ADIEU_WS_OP_CONT, true, "\xbd\xb9 ok", 5);
        s_frame(&s, ADIEU_WS_OP_BINARY, true, "\x00\xff\x80", 3);
        uint8_t mid[300];
        memset(mid, 'm', sizeof(mid));
        s_frame(&s, ADIEU_WS_OP_TEXT, true, mid, sizeof(mid));
        s_close(&s, 1000 + (long)(iter % 20), "bye", 3);
        for (int k = 0; k < 1 + iter % 4; k++) {
            uint64_t r = next_random(&rng);
            size_t at = (size_t)((r >> 8) % s.n);
            if ((r & 3) == 0) {
                s.b[at] ^= (uint8_t)(1u << ((r >> 40) & 7));
            } else if ((r & 3) == 1) {
                s.b[at] = (uint8_t)(r >> 48);
            } else if ((r & 3) == 2 && s.n > 1) {
                memmove(s.b + at, s.b + at + 1, s.n - at - 1);
                s.n--;
            } else {
                uint8_t b = (uint8_t)(r >> 48);
                s_put(&s, &b, 1);
                memmove(s.b + at + 1, s.b + at, s.n - at - 1);
                s.b[at] = b;
            }
        }
        trace_t *whole = run(200, s.b, s.n, SPLIT_WHOLE, 0, 0);
        trace_t *t = run(200, s.b, s.n, iter % 2 ? SPLIT_BYTES : SPLIT_RANDOM, 0, (uint64_t)iter);
        bool ok = same_trace(whole, t);
        /* Nothing follows a failure or the peer's close. */
        for (size_t i = 0; ok && i + 1 < whole->count; i++) {
            ok = CHECK(whole->ev[i].type != ADIEU_WS_EV_FAIL &&
                       whole->ev[i].type != ADIEU_WS_EV_CLOSE);
        }
        run_free(whole);
        run_free(t);
        s_free(&s);
        if (!ok) {
            fprintf(stderr, "  iteration %d\n", iter);
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Random conversations: the fast path against the frame parser
 * ------------------------------------------------------------------------------------- */

/* n bytes of valid UTF-8: ASCII and characters of 2, 3 and 4 bytes. */
static void random_text(uint64_t *rng, uint8_t *p, size_t n)
{
    static const uint8_t chars[][4] = {
        {'a'}, {0xc3, 0xa9}, {0xe2, 0x82, 0xac}, {0xf0, 0x9f, 0x98, 0x80}};
    for (size_t i = 0; i < n;) {
        uint64_t r = next_random(rng);
        size_t k = (r & 1) ? 1 : (size_t)((r >> 1) % 4) + 1;
        k = k <= n - i ? k : 1;
        memcpy(p + i, chars[k - 1], k);
        if (k == 1) {
            p[i] = (uint8_t)(0x20 + (r >> 8) % 0x5f);
        }
        i += k;
    }
}

static void random_bytes(uint64_t *rng, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(next_random(rng) >> 40);
    }
}

/* A payload length of 0 to 300, often at an edge: the 7-bit and 16-bit forms meet at
 * 125/126, and the unmasking works in words of 8 and 32 bytes. */
static size_t random_len(uint64_t *rng)
{
    static const size_t edges[] = {0, 1, 2, 3, 4, 7, 8, 9, 31, 32, 33, 124, 125, 126, 127, 300};
    uint64_t r = next_random(rng);
    switch (r & 3) {
    case 0:
        return edges[(r >> 8) % (sizeof(edges) / sizeof(edges[0]))];
    case 1:
        return (size_t)((r >> 8) % 40);
    default:
        return (size_t)((r >> 8) % 301);
    }
}

/* Appends a frame as given: first byte b0, masked or not, its length in the 7-bit, 16-bit
 * or 64-bit form (enc 0, 1 or 2; not necessarily the shortest; len <= 125 for 0). */
static void s_raw(stream_t *s, unsigned b0, bool masked, unsigned enc, const uint8_t *p, size_t len)
{
    uint8_t head[14];
    size_t h = 0;
    unsigned mask = masked ? 0x80u : 0u;
    head[h++] = (uint8_t)b0;
    if (enc == 0) {
        head[h++] = (uint8_t)(mask | len);
    } else {
        unsigned bytes = enc == 1 ? 2 : 8;
        head[h++] = (uint8_t)(mask | (enc == 1 ? 126u : 127u));
        for (unsigned i = 0; i < bytes; i++) {
            head[h++] = (uint8_t)((uint64_t)len >> (8 * (bytes - 1 - i)));
        }
    }
    uint64_t r = next_random(&s->rng);
    uint8_t key[4];
    memcpy(key, &r, 4);
    if (masked) {
        memcpy(head + h, key, 4);
        h += 4;
    }
    s_put(s, head, h);
    size_t at = s->n;
    s_put(s, p, len);
    if (masked) {
        adieu_ws_mask(s->b + at, len, key, 0);
    }
}

/* A ping or a pong of up to 125 bytes. */
static void s_random_control(uint64_t *rng, stream_t *s)
{
    uint8_t p[ADIEU_WS_MAX_CONTROL];
    uint64_t r = next_random(rng);
    size_t len = random_len(rng) % (ADIEU_WS_MAX_CONTROL + 1);
    random_bytes(rng, p, len);
    s_frame(s, (r & 1) ? ADIEU_WS_OP_PING : ADIEU_WS_OP_PONG, true, p, len);
}

/* A message in 2 to 4 fragments cut anywhere (through characters too), control frames
 * between some of them. */
static void s_random_fragments(uint64_t *rng, stream_t *s)
{
    uint8_t p[300];
    uint64_t r = next_random(rng);
    adieu_ws_opcode_t op = (r & 1) ? ADIEU_WS_OP_TEXT : ADIEU_WS_OP_BINARY;
    size_t len = random_len(rng);
    if (op == ADIEU_WS_OP_TEXT) {
        random_text(rng, p, len);
    } else {
        random_bytes(rng, p, len);
    }
    size_t parts = 2 + (size_t)((r >> 1) % 3);
    size_t off = 0;
    for (size_t k = 0; k < parts; k++) {
        bool last = k + 1 == parts;
        size_t n = last ? len - off : (size_t)(next_random(rng) % (len - off + 1));
        s_frame(s, k == 0 ? op : ADIEU_WS_OP_CONT, last, p + off, n);
        off += n;
        if (!last && (next_random(rng) & 1)) {
            s_random_control(rng, s);
        }
    }
}

/* One way of breaking the protocol, most of them right where the fast path looks. */
static void s_random_error(uint64_t *rng, stream_t *s)
{
    uint8_t p[300];
    uint64_t r = next_random(rng);
    size_t len = random_len(rng);
    unsigned b0 = (r & 1) ? 0x81u : 0x82u;
    random_text(rng, p, len);
    switch ((r >> 1) % 11) {
    case 0: /* unmasked */
        s_raw(s, b0, false, len <= 125 ? 0 : 1, p, len);
        break;
    case 1: /* RSV1, RSV2 or RSV3 */
        s_raw(s, b0 | (0x10u << ((r >> 8) % 3)), true, len <= 125 ? 0 : 1, p, len);
        break;
    case 2: /* a reserved data opcode */
        s_raw(s, 0x83u, true, len <= 125 ? 0 : 1, p, len);
        break;
    case 3: /* a 16-bit length that fits in 7 bits */
        s_raw(s, b0, true, 1, p, len % 126);
        break;
    case 4: /* a 64-bit length that fits in 16 bits */
        s_raw(s, b0, true, 2, p, len);
        break;
    case 5: /* a continuation with no message */
        s_frame(s, ADIEU_WS_OP_CONT, true, p, len);
        break;
    case 6: /* a fragmented ping */
        s_raw(s, 0x09u, true, 0, p, len % 126);
        break;
    case 7: /* a new message inside a fragmented one */
        s_frame(s, ADIEU_WS_OP_BINARY, false, p, len / 2);
        s_frame(s, ADIEU_WS_OP_TEXT, true, p, len);
        break;
    case 8: /* text ending inside a character */
        p[len > 1 ? len - 2 : 0] = 0xe2;
        if (len > 1) {
            p[len - 1] = 0x82;
        }
        s_frame(s, ADIEU_WS_OP_TEXT, true, p, len > 0 ? len : 1);
        break;
    default: { /* a byte no UTF-8 may hold, or a surrogate, anywhere in text */
        static const uint8_t bad[][3] = {{0xff}, {0xc0, 0x80}, {0x80}, {0xed, 0xa0, 0x80}};
        const uint8_t *b = bad[(r >> 8) % 4];
        size_t bn = b[0] == 0xed ? 3 : b[0] == 0xc0 ? 2 : 1;
        len = len > bn ? len : bn;
        size_t at = (size_t)((r >> 16) % (len - bn + 1));
        memcpy(p + at, b, bn);
        s_frame(s, ADIEU_WS_OP_TEXT, true, p, len);
        break;
    }
    }
}

/* A random conversation of up to 30 items: whole text (valid UTF-8) and binary messages of 0
 * to 300 bytes, fragmented messages, pings and pongs; errors at err_pct percent of the items;
 * now and then the peer's close. Sets *boundary to the stream offset after a random item. */
static void random_conversation(uint64_t *rng, stream_t *s, unsigned err_pct, size_t *boundary)
{
    uint8_t p[300];
    size_t items = 1 + (size_t)(next_random(rng) % 30);
    size_t mark = (size_t)(next_random(rng) % items);
    for (size_t i = 0; i < items; i++) {
        uint64_t r = next_random(rng);
        unsigned what = (unsigned)(r % 100);
        size_t len = random_len(rng);
        if (what < err_pct) {
            s_random_error(rng, s);
        } else if (what < 45) {
            random_text(rng, p, len);
            s_frame(s, ADIEU_WS_OP_TEXT, true, p, len);
        } else if (what < 75) {
            random_bytes(rng, p, len);
            s_frame(s, ADIEU_WS_OP_BINARY, true, p, len);
        } else if (what < 87) {
            s_random_fragments(rng, s);
        } else if (what < 99) {
            s_random_control(rng, s);
        } else {
            s_close(s, 1000, "bye", 3);
        }
        if (i == mark) {
            *boundary = s->n;
        }
    }
    if (next_random(rng) & 1) {
        s_close(s, 1000 + (long)(next_random(rng) % 4), "", 0);
    }
}

/* The fast path for a whole unfragmented message against the frame parser's two events:
 * random conversations, fed whole (most messages take the fast path), at random splits (some
 * do, some frames are split) and one byte at a time (none does), must give the same events
 * (type, opcode, bytes, code, failure and detail, and the stream offset each one consumed up
 * to), output and final state. Every failure the fast path leaves to the parser must come up
 * at least once. */
static void recv_random_conversations(void)
{
    static const char *const details[] = {"invalid UTF-8 in a text message",
                                          "text message ends inside a character",
                                          "message too big",
                                          "unmasked client frame",
                                          "reserved bits set",
                                          "reserved opcode",
                                          "length not minimally encoded",
                                          "continuation without a message",
                                          "new message inside a fragmented one",
                                          "fragmented control frame"};
    enum { N_DETAILS = sizeof(details) / sizeof(details[0]) };
    static const size_t small_limits[] = {0, 1, 16, 125, 126, 200};
    bool seen[N_DETAILS] = {false};
    size_t messages = 0;
    size_t closing_runs = 0;
    uint64_t rng = 0x6455;
    for (int iter = 0; iter < 200; iter++) {
        stream_t s = {.rng = next_random(&rng)};
        uint64_t r = next_random(&rng);
        static const unsigned err_pcts[] = {0, 2, 10};
        size_t boundary = 0;
        random_conversation(&rng, &s, err_pcts[r % 3], &boundary);
        /* Mostly a limit no message reaches (fragmented ones are at most 300 bytes too). */
        size_t max = (r >> 4) % 4 == 0 ? small_limits[(r >> 8) % 6] : 1000;
        /* Now and then our close after some item: LOCAL_CLOSING drops messages unseen. */
        size_t close_at = (r >> 16) % 8 == 0 ? boundary : SIZE_MAX;
        closing_runs += close_at != SIZE_MAX;

        trace_t *whole = run_at(max, s.b, s.n, SPLIT_WHOLE, 0, 0, close_at);
        trace_t *t = run_at(max, s.b, s.n, SPLIT_BYTES, 0, 0, close_at);
        bool ok = same_trace(whole, t);
        run_free(t);
        for (uint64_t seed = 1; ok && seed <= 2; seed++) {
            t = run_at(max, s.b, s.n, SPLIT_RANDOM, 0, (uint64_t)iter * 16 + seed, close_at);
            ok = same_trace(whole, t);
            run_free(t);
        }
        if (ok && close_at == SIZE_MAX && s.n > 1) {
            t = run(max, s.b, s.n, SPLIT_AT, 1 + (size_t)((r >> 24) % (s.n - 1)), 0);
            ok = same_trace(whole, t);
            run_free(t);
        }
        for (size_t i = 0; i < whole->count; i++) {
            const rec_t *e = &whole->ev[i];
            messages += e->type == ADIEU_WS_EV_MESSAGE;
            for (size_t k = 0; e->type == ADIEU_WS_EV_FAIL && k < N_DETAILS; k++) {
                seen[k] = seen[k] || strcmp(e->detail, details[k]) == 0;
            }
        }
        run_free(whole);
        s_free(&s);
        if (!ok) {
            fprintf(stderr, "  iteration %d\n", iter);
            return;
        }
    }
    CHECK(messages > 1000);
    CHECK(closing_runs > 10);
    for (size_t k = 0; k < N_DETAILS; k++) {
        if (!CHECK(seen[k])) {
            fprintf(stderr, "  never failed with \"%s\"\n", details[k]);
        }
    }
}

static void fail_codes(void)
{
    CHECK_EQ(adieu_ws_fail_code(ADIEU_WS_FAIL_PROTOCOL_ERROR), 1002);
    CHECK_EQ(adieu_ws_fail_code(ADIEU_WS_FAIL_INVALID_UTF8), 1007);
    CHECK_EQ(adieu_ws_fail_code(ADIEU_WS_FAIL_TOO_BIG), 1009);
    CHECK_EQ(adieu_ws_fail_code(ADIEU_WS_FAIL_SERVER_ERROR), 1011);
    CHECK_EQ(adieu_ws_fail_code(ADIEU_WS_FAIL_NONE), 0);
}

int main(void)
{
    CHECK_RUN(recv_rfc_masked_hello);
    CHECK_RUN(recv_rfc_fragmented_hello);
    CHECK_RUN(recv_rfc_binary_256_and_64k);
    CHECK_RUN(recv_empty_messages);
    CHECK_RUN(recv_binary_not_validated);
    CHECK_RUN(recv_many_messages);
    CHECK_RUN(recv_ping);
    CHECK_RUN(recv_ping_125);
    CHECK_RUN(recv_ping_latest_pong_only);
    CHECK_RUN(recv_pong);
    CHECK_RUN(recv_ctrl_between_fragments);
    CHECK_RUN(recv_continuation_without_start);
    CHECK_RUN(recv_data_inside_fragmented);
    CHECK_RUN(recv_ctrl_too_long);
    CHECK_RUN(recv_ctrl_fragmented);
    CHECK_RUN(recv_reserved_opcode);
    CHECK_RUN(recv_rsv1);
    CHECK_RUN(recv_unmasked);
    CHECK_RUN(recv_len16_not_minimal);
    CHECK_RUN(recv_len64_msb);
    CHECK_RUN(recv_text_invalid_utf8);
    CHECK_RUN(recv_text_invalid_utf8_across_fragments);
    CHECK_RUN(recv_text_valid_utf8_across_fragments);
    CHECK_RUN(recv_text_truncated_utf8);
    CHECK_RUN(recv_text_fails_fast);
    CHECK_RUN(recv_too_big_single_frame);
    CHECK_RUN(recv_too_big_running_total);
    CHECK_RUN(recv_too_big_before_buffering);
    CHECK_RUN(recv_close_empty);
    CHECK_RUN(recv_close_valid_codes);
    CHECK_RUN(recv_close_bad_code_1005);
    CHECK_RUN(recv_close_bad_code_1006);
    CHECK_RUN(recv_close_bad_code_1004);
    CHECK_RUN(recv_close_bad_code_1015);
    CHECK_RUN(recv_close_bad_code_below_1000);
    CHECK_RUN(recv_close_bad_code_unassigned);
    CHECK_RUN(recv_close_bad_code_above_4999);
    CHECK_RUN(recv_close_bad_code_all);
    CHECK_RUN(recv_close_1_byte);
    CHECK_RUN(recv_close_invalid_utf8_reason);
    CHECK_RUN(recv_close_reason_valid);
    CHECK_RUN(recv_after_close_discarded);
    CHECK_RUN(recv_close_then_output);
    CHECK_RUN(send_close_then_peer_close);
    CHECK_RUN(send_close_crossing);
    CHECK_RUN(send_close_discards_messages);
    CHECK_RUN(send_close_mid_message);
    CHECK_RUN(fail_in_local_closing);
    CHECK_RUN(send_close_twice);
    CHECK_RUN(send_close_invalid);
    CHECK_RUN(send_after_close);
    CHECK_RUN(output_pong_before_close);
    CHECK_RUN(output_partial_pong);
    CHECK_RUN(fail_is_terminal);
    CHECK_RUN(eof_truncated);
    CHECK_RUN(assembly_kept_until_trim);
    CHECK_RUN(assembly_trim_gives_to_the_pool);
    CHECK_RUN(assembly_trim_keeps_message_in_progress);
    CHECK_RUN(assembly_trim_keeps_partial_header);
    CHECK_RUN(assembly_trim_after_close);
    CHECK_RUN(assembly_large_storage_released);
    CHECK_RUN(assembly_no_allocation_per_split_message);
    CHECK_RUN(assembly_no_allocation_per_fragmented_message);
    CHECK_RUN(ctl_whole_ping_in_place);
    CHECK_RUN(ctl_split_ping);
    CHECK_RUN(ctl_close_split_bytes);
    CHECK_RUN(ctl_send_close_until_taken);
    CHECK_RUN(ctl_out_of_memory);
    CHECK_RUN(ctl_no_allocation_idle);
    CHECK_RUN(conn_free_is_terminal);
    CHECK_RUN(recv_1mib_binary_random_fragments);
    CHECK_RUN(recv_1mib_text_random_fragments);
    CHECK_RUN(recv_mutated_streams);
    CHECK_RUN(recv_random_conversations);
    CHECK_RUN(fail_codes);
    return check_done();
}
