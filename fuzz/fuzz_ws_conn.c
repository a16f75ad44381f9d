/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for the server-side WebSocket connection (proto/ws_conn.h): a whole
 * connection after the upgrade, driven by what a client sends.
 *
 * Input: byte 0 picks the message limit (low 3 bits), the mode (bits 3-4) and whether
 * allocations fail (bits 5-7: 7 fails every one, 6 all but the first, 5 all but two); bytes 1-2 and
 * 3-4 pick two chunkings (fuzz.h); bytes 5-8 are a script for our side: whether and where in
 * the stream we send a close frame (code and reason from the input), and how much control
 * output to take after each event. The rest is the client's stream, or describes it:
 *   mode 0  raw bytes, as they come;
 *   mode 1  frames built from the input with any opcode, FIN, RSV bits, masked or not, any
 *           length encoding (non-minimal too), a declared length longer or shorter than the
 *           bytes that follow, text payloads valid UTF-8 or not;
 *   mode 2, 3  a valid conversation: text (multi-byte UTF-8) and binary messages, each cut
 *           into fragments by the input, each frame masked with its own key, pings and pongs
 *           between the fragments, perhaps a close frame and garbage after it.
 *
 * The stream is fed twice, in each chunking, and any local close happens after the same
 * number of stream bytes both times. Invariants:
 *   - every event is well formed: data never NULL; a MESSAGE only while OPEN, within the
 *     limit, TEXT valid UTF-8 by the reference of fuzz.h, its bytes in the input or the
 *     assembly buffer; PING and PONG at most 125 bytes, in the input or the control block; CLOSE
 *     with 1005 and no reason or a valid code and a UTF-8 reason; FAIL with no data, a
 *     detail, the code of its kind, and the whole input consumed;
 *   - consumed <= len; 0 only with everything consumed; each event moves forward; states
 *     move only along OPEN -> LOCAL_CLOSING / REMOTE_CLOSING -> CLOSED, any -> FAILED, and
 *     FAILED and CLOSED are terminal: after FAIL or CLOSE nothing more is reported and every
 *     byte is discarded; _close_expected(), _done(), _send_header() and _send_close() agree
 *     with the state; a connection trimmed after each chunk (as the I/O layer trims after
 *     each read) still assembles messages across chunks, and once trimmed between messages
 *     it holds no heap memory;
 *   - control output is well formed: unmasked final PONG and CLOSE frames, pongs echo pings,
 *     nothing after our close frame, exactly one close frame when one was queued, carrying
 *     the failure's code when a failure queued it;
 *   - both chunkings give the same trace (events, states, output, the EOF answer, the stream
 *     offset each event but FAIL consumed up to, the bookkeeping of a message under way at
 *     the end), unless allocations fail (how many a run makes depends on the chunking): then
 *     a message that cannot be assembled is a FAIL of kind SERVER_ERROR (1011), checked like
 *     any other. A chunking that hands over whole frames takes the fast path for whole
 *     messages (proto/ws_conn.c, whole_message()), one byte at a time never does: this
 *     compares the two;
 *   - a valid conversation gives exactly its messages (reassembled from any fragment split),
 *     pings, pongs and close, in order, and the expected pongs and close echo.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/ws_conn.h"

#include "fuzz.h"

static const size_t limits[8] = {0, 1, 3, 125, 126, 1000, 65536, (size_t)1 << 20};

/* ---------------------------------------------------------------------------------------
 * Traces
 * ------------------------------------------------------------------------------------- */

/* A pseudo-event type for our own send_close() in the trace. */
#define REC_SEND_CLOSE 100

typedef struct {
    int type;
    int opcode;
    unsigned code;
    int fail;
    const char *detail;
    size_t off; /* of its bytes in trace_t.data */
    size_t len;
    adieu_ws_state_t state; /* after it */
    /* Not FAIL: the stream offset consumed up to, after it (the end of the frame that
     * completed it, whatever the chunking); SEND_CLOSE: where it was sent. */
    size_t at;
    const uint8_t *empty_data; /* an empty MESSAGE: its data pointer, the same every time */
} rec_t;

typedef struct {
    rec_t *ev;
    size_t count;
    size_t cap;
    fuzz_bytes_t data;
    fuzz_bytes_t out; /* control output taken */
    adieu_ws_state_t state;
    int eof;
    bool done;
    /* The bookkeeping of the message being received, at the end. */
    bool msg_active;
    int msg_opcode;
    size_t msg_len;
    uint32_t utf8_state;
    bool frame_idle; /* unless FAILED, where the parser stops depends on the chunking */
    size_t base;     /* the stream offset of the chunk being fed */
    /* What the output must show. */
    bool close_queued;  /* a close frame was queued (by a CLOSE, FAIL or our send_close) */
    bool fail_queued;   /* ... by a FAIL: then it carries fail_code and fail_detail */
    unsigned fail_code; /* (this and fail_detail only when fail_queued) */
    const char *fail_detail;
} trace_t;

static rec_t *add_rec(trace_t *t, int type, const void *data, size_t len)
{
    if (t->count == t->cap) {
        t->cap = t->cap * 2 + 16;
        rec_t *ev = realloc(t->ev, t->cap * sizeof(*ev));
        FUZZ_ASSERT(ev != NULL);
        t->ev = ev;
    }
    rec_t *r = &t->ev[t->count++];
    memset(r, 0, sizeof(*r));
    r->type = type;
    r->off = t->data.n;
    r->len = len;
    fuzz_put(&t->data, data, len);
    return r;
}

static void trace_free(trace_t *t)
{
    free(t->ev);
    fuzz_bytes_free(&t->data);
    fuzz_bytes_free(&t->out);
    memset(t, 0, sizeof(*t));
}

static void same_trace(const trace_t *a, const trace_t *b)
{
    FUZZ_ASSERT(a->count == b->count);
    for (size_t i = 0; i < a->count; i++) {
        const rec_t *x = &a->ev[i];
        const rec_t *y = &b->ev[i];
        FUZZ_ASSERT(x->type == y->type && x->opcode == y->opcode && x->code == y->code);
        FUZZ_ASSERT(x->fail == y->fail && x->detail == y->detail && x->state == y->state);
        FUZZ_ASSERT(x->off == y->off && x->len == y->len);
        FUZZ_ASSERT(x->at == y->at && x->empty_data == y->empty_data);
    }
    FUZZ_ASSERT(fuzz_bytes_eq(&a->data, b->data.b, b->data.n));
    FUZZ_ASSERT(fuzz_bytes_eq(&a->out, b->out.b, b->out.n));
    FUZZ_ASSERT(a->state == b->state && a->eof == b->eof && a->done == b->done);
    FUZZ_ASSERT(a->msg_active == b->msg_active && a->msg_opcode == b->msg_opcode);
    FUZZ_ASSERT(a->msg_len == b->msg_len && a->utf8_state == b->utf8_state);
    FUZZ_ASSERT(a->frame_idle == b->frame_idle);
}

/* ---------------------------------------------------------------------------------------
 * Our side: the script
 * ------------------------------------------------------------------------------------- */

typedef struct {
    size_t close_at; /* stream offset of our send_close(), SIZE_MAX for none */
    unsigned code;
    uint8_t reason[144];
    size_t reason_len;
    uint8_t take; /* four 2-bit output policies, by event number */
} script_t;

/* Takes control output as the policy for this event says: none, one byte, or all. */
static void take_output(adieu_ws_conn_t *c, trace_t *t, unsigned policy)
{
    for (;;) {
        const uint8_t *p = NULL;
        size_t n = adieu_ws_conn_output(c, &p);
        if (n == 0 || policy == 0) {
            return;
        }
        FUZZ_ASSERT(p != NULL && n <= 2 + ADIEU_WS_MAX_CONTROL);
        if (policy == 1) {
            n = 1;
        }
        fuzz_put(&t->out, p, n);
        adieu_ws_conn_output_consume(c, n);
        if (policy == 1) {
            return;
        }
    }
}

static bool state_known(adieu_ws_state_t s)
{
    return s >= ADIEU_WS_OPEN && s <= ADIEU_WS_FAILED;
}

/* Checks what the state-dependent calls say. */
static void check_state_calls(adieu_ws_conn_t *c)
{
    adieu_ws_state_t s = adieu_ws_conn_state(c);
    FUZZ_ASSERT(state_known(s));
    FUZZ_ASSERT(adieu_ws_conn_close_expected(c) == (s == ADIEU_WS_LOCAL_CLOSING));
    FUZZ_ASSERT(!adieu_ws_conn_done(c) || s == ADIEU_WS_CLOSED);
    uint8_t head[10];
    int h = adieu_ws_conn_send_header(c, ADIEU_WS_OP_BINARY, 300, head);
    FUZZ_ASSERT(h == (s == ADIEU_WS_OPEN ? 4 : ADIEU_EINVALID_STATE));
    /* Close frames go through _send_close(), and a ping is a control frame (RFC 6455 §5.5). */
    h = adieu_ws_conn_send_header(c, ADIEU_WS_OP_CLOSE, 0, head);
    FUZZ_ASSERT(h == (s == ADIEU_WS_OPEN ? ADIEU_EINVAL : ADIEU_EINVALID_STATE));
    h = adieu_ws_conn_send_header(c, ADIEU_WS_OP_PING, ADIEU_WS_MAX_CONTROL + 1, head);
    FUZZ_ASSERT(h == (s == ADIEU_WS_OPEN ? ADIEU_EINVAL : ADIEU_EINVALID_STATE));
    int e = adieu_ws_conn_eof(c);
    FUZZ_ASSERT(e == 0 || e == ADIEU_ETRUNCATED);
    FUZZ_ASSERT(e == 0 || s == ADIEU_WS_OPEN || s == ADIEU_WS_LOCAL_CLOSING);
}

static void send_close(adieu_ws_conn_t *c, trace_t *t, const script_t *sc)
{
    adieu_ws_state_t before = adieu_ws_conn_state(c);
    int rc = adieu_ws_conn_send_close(c, sc->code, (const char *)sc->reason, sc->reason_len);
    bool valid = adieu_ws_close_code_valid(sc->code) && sc->reason_len <= 123 &&
                 fuzz_utf8_valid(sc->reason, sc->reason_len);
    if (before != ADIEU_WS_OPEN) {
        FUZZ_ASSERT(rc == ADIEU_EINVALID_STATE && adieu_ws_conn_state(c) == before);
    } else if (!valid) {
        FUZZ_ASSERT(rc == ADIEU_EINVAL && adieu_ws_conn_state(c) == before);
    } else if (rc == ADIEU_ENOMEM) {
        /* Only a reason needs the control block; nothing is queued without it. */
        FUZZ_ASSERT(fuzz_alloc_may_fail() && sc->reason_len > 0);
        FUZZ_ASSERT(adieu_ws_conn_state(c) == before && !adieu_ws_conn_close_expected(c));
    } else {
        FUZZ_ASSERT(rc == 0 && adieu_ws_conn_state(c) == ADIEU_WS_LOCAL_CLOSING);
        FUZZ_ASSERT(!t->close_queued);
        t->close_queued = true;
    }
    rec_t *r = add_rec(t, REC_SEND_CLOSE, NULL, 0);
    r->code = (unsigned)-rc;
    r->at = t->base;
    r->state = adieu_ws_conn_state(c);
    check_state_calls(c);
    take_output(c, t, 2);
}

/* ---------------------------------------------------------------------------------------
 * Feeding
 * ------------------------------------------------------------------------------------- */

/* Checks one event against the state before the call and records it. */
static void on_event(adieu_ws_conn_t *c, trace_t *t, const adieu_ws_event_t *ev,
                     adieu_ws_state_t before, const uint8_t *chunk, size_t clen)
{
    adieu_ws_state_t s = adieu_ws_conn_state(c);
    FUZZ_ASSERT(ev->data != NULL);
    FUZZ_ASSERT(before == ADIEU_WS_OPEN || before == ADIEU_WS_LOCAL_CLOSING);
    rec_t *r = add_rec(t, (int)ev->type, ev->data, ev->len);
    r->state = s;
    switch (ev->type) {
    case ADIEU_WS_EV_MESSAGE:
        FUZZ_ASSERT(before == ADIEU_WS_OPEN && s == ADIEU_WS_OPEN);
        FUZZ_ASSERT(ev->opcode == ADIEU_WS_OP_TEXT || ev->opcode == ADIEU_WS_OP_BINARY);
        FUZZ_ASSERT(ev->len <= c->max_message);
        FUZZ_ASSERT(ev->opcode != ADIEU_WS_OP_TEXT || fuzz_utf8_valid(ev->data, ev->len));
        FUZZ_ASSERT(ev->len == 0 || fuzz_inside(ev->data, ev->len, chunk, clen) ||
                    fuzz_inside(ev->data, ev->len, c->assembly.data, c->assembly.len));
        r->opcode = (int)ev->opcode;
        r->empty_data = ev->len == 0 ? ev->data : NULL;
        break;
    case ADIEU_WS_EV_PING:
    case ADIEU_WS_EV_PONG:
        FUZZ_ASSERT(s == before && ev->len <= ADIEU_WS_MAX_CONTROL);
        FUZZ_ASSERT(
            ev->len == 0 || fuzz_inside(ev->data, ev->len, chunk, clen) ||
            (c->ctl != NULL && fuzz_inside(ev->data, ev->len, c->ctl->ctrl, sizeof(c->ctl->ctrl))));
        break;
    case ADIEU_WS_EV_CLOSE:
        FUZZ_ASSERT(s == (before == ADIEU_WS_OPEN ? ADIEU_WS_REMOTE_CLOSING : ADIEU_WS_CLOSED));
        FUZZ_ASSERT(ev->len <= ADIEU_WS_MAX_CONTROL - 2 && fuzz_utf8_valid(ev->data, ev->len));
        FUZZ_ASSERT((ev->code == 1005 && ev->len == 0) || adieu_ws_close_code_valid(ev->code));
        r->code = ev->code;
        if (before == ADIEU_WS_OPEN) {
            FUZZ_ASSERT(!t->close_queued);
            t->close_queued = true;
        }
        break;
    case ADIEU_WS_EV_FAIL:
        FUZZ_ASSERT(s == ADIEU_WS_FAILED && ev->len == 0 && ev->detail != NULL);
        FUZZ_ASSERT(ev->fail > ADIEU_WS_FAIL_NONE && ev->fail <= ADIEU_WS_FAIL_SERVER_ERROR);
        FUZZ_ASSERT(ev->code == adieu_ws_fail_code(ev->fail) && ev->code != 0);
        /* Our own fault, only when memory runs out. */
        FUZZ_ASSERT(ev->fail != ADIEU_WS_FAIL_SERVER_ERROR || fuzz_alloc_may_fail());
        r->code = ev->code;
        r->fail = (int)ev->fail;
        r->detail = ev->detail;
        if (!t->close_queued) {
            t->close_queued = true;
            t->fail_queued = true;
            t->fail_code = ev->code;
            t->fail_detail = ev->detail;
        }
        break;
    default:
        FUZZ_ASSERT(!"unknown event type");
    }
    check_state_calls(c);
}

static bool terminal(adieu_ws_state_t s)
{
    return s != ADIEU_WS_OPEN && s != ADIEU_WS_LOCAL_CLOSING;
}

/* Feeds one chunk (a private copy: payloads are unmasked in place) until it is consumed. */
static void feed(adieu_ws_conn_t *c, trace_t *t, const uint8_t *src, size_t clen,
                 const script_t *sc)
{
    uint8_t *chunk = fuzz_dup(src, clen);
    size_t pos = 0;
    for (;;) {
        adieu_ws_state_t before = adieu_ws_conn_state(c);
        adieu_ws_event_t ev;
        size_t used = SIZE_MAX;
        int rc = adieu_ws_conn_recv(c, chunk + pos, clen - pos, &used, &ev);
        FUZZ_ASSERT(used <= clen - pos);
        pos += used;
        if (rc == 0) {
            FUZZ_ASSERT(pos == clen && adieu_ws_conn_state(c) == before);
            break;
        }
        /* After the peer's close or a failure nothing more is reported. */
        FUZZ_ASSERT(rc == 1 && used > 0 && !terminal(before));
        on_event(c, t, &ev, before, chunk, clen);
        if (ev.type == ADIEU_WS_EV_FAIL) {
            FUZZ_ASSERT(pos == clen);
        } else {
            t->ev[t->count - 1].at = t->base + pos;
        }
        take_output(c, t, (sc->take >> (2 * (t->count & 3u))) & 3u);
    }
    free(chunk);
    /* The empty call: reports nothing, and releases an assembled message. */
    adieu_ws_state_t before = adieu_ws_conn_state(c);
    adieu_ws_event_t ev;
    size_t used = SIZE_MAX;
    FUZZ_ASSERT(adieu_ws_conn_recv(c, NULL, 0, &used, &ev) == 0 && used == 0);
    FUZZ_ASSERT(adieu_ws_conn_state(c) == before);
    /* The end of a read: trimmed, a connection between messages, or one that no longer
     * delivers them, holds no heap memory; one inside a message keeps its bytes so far. */
    size_t held = c->msg_active ? c->assembly.len - c->assembly.off : 0;
    adieu_ws_conn_trim(c);
    FUZZ_ASSERT(adieu_ws_conn_state(c) == before);
    bool between = !c->msg_active && adieu_ws_frame_parser_idle(&c->frame);
    if (between || before != ADIEU_WS_OPEN) {
        FUZZ_ASSERT(c->assembly.data == NULL);
    } else {
        FUZZ_ASSERT(c->assembly.len - c->assembly.off == held);
    }
    /* The control block goes too once nothing in it is wanted: no output left to take and no
     * control frame under way (none can be once input is discarded). */
    if (!adieu_ws_conn_has_output(c) &&
        (adieu_ws_frame_parser_idle(&c->frame) || terminal(before))) {
        FUZZ_ASSERT(c->ctl == NULL);
    }
}

/* Checks the control output taken: final unmasked PONG and CLOSE frames, pongs echoing
 * pings, at most one close frame and nothing after it. */
static void check_output(const trace_t *t)
{
    uint8_t *out = fuzz_dup(t->out.b, t->out.n);
    adieu_ws_frame_parser_t p;
    adieu_ws_frame_parser_init(&p, ADIEU_WS_CLIENT);
    size_t pos = 0;
    unsigned op = 0;
    uint8_t payload[ADIEU_WS_MAX_CONTROL];
    size_t plen = 0;
    bool closed = false;
    while (pos < t->out.n) {
        adieu_ws_frame_event_t ev;
        size_t used = 0;
        int rc = adieu_ws_frame_parse(&p, out + pos, t->out.n - pos, &used, &ev);
        pos += used;
        FUZZ_ASSERT(rc == 1);
        if (ev.type == ADIEU_WS_FRAME_HEADER) {
            FUZZ_ASSERT(!closed && ev.fin);
            FUZZ_ASSERT(ev.opcode == ADIEU_WS_OP_PONG || ev.opcode == ADIEU_WS_OP_CLOSE);
            op = ev.opcode;
            plen = 0;
        } else {
            FUZZ_ASSERT(ev.len <= sizeof(payload) - plen);
            memcpy(payload + plen, ev.data, ev.len);
            plen += ev.len;
        }
        if (!ev.last) {
            continue;
        }
        if (op == ADIEU_WS_OP_CLOSE) {
            closed = true;
            FUZZ_ASSERT(plen != 1);
            unsigned code = plen >= 2 ? (unsigned)payload[0] << 8 | payload[1] : 0;
            FUZZ_ASSERT(plen == 0 || adieu_ws_close_code_valid(code));
            FUZZ_ASSERT(plen < 2 || fuzz_utf8_valid(payload + 2, plen - 2));
            if (t->fail_queued) {
                /* Out of memory for the control block, the failure's close carries its code
                 * alone. */
                size_t dl = strlen(t->fail_detail);
                bool bare = plen == 2 && fuzz_alloc_may_fail();
                FUZZ_ASSERT(code == t->fail_code && (plen == 2 + dl || bare));
                FUZZ_ASSERT(bare || memcmp(payload + 2, t->fail_detail, dl) == 0);
            }
            continue;
        }
        /* A pong echoes the payload of a ping received. */
        bool found = false;
        for (size_t i = 0; i < t->count && !found; i++) {
            const rec_t *r = &t->ev[i];
            found = r->type == ADIEU_WS_EV_PING && r->len == plen &&
                    (plen == 0 || memcmp(t->data.b + r->off, payload, plen) == 0);
        }
        FUZZ_ASSERT(found);
    }
    FUZZ_ASSERT(adieu_ws_frame_parser_idle(&p));
    FUZZ_ASSERT(closed == t->close_queued);
    free(out);
}

/* Feeds the stream in the chunks split gives, our close at sc->close_at; fills t. */
static void run(const uint8_t *s, size_t n, size_t max, fuzz_split_t split, const script_t *sc,
                trace_t *t)
{
    adieu_ws_conn_t c;
    adieu_ws_conn_init(&c, max);
    check_state_calls(&c);
    FUZZ_ASSERT(adieu_ws_conn_eof(&c) == 0);
    size_t off = 0;
    bool acted = sc->close_at == SIZE_MAX;
    for (;;) {
        t->base = off;
        if (!acted && off == sc->close_at) {
            send_close(&c, t, sc);
            acted = true;
        }
        if (off == n) {
            break;
        }
        size_t left = acted ? n - off : sc->close_at - off;
        size_t clen = fuzz_split_next(&split, left);
        feed(&c, t, s + off, clen, sc);
        off += clen;
    }
    take_output(&c, t, 2);
    t->state = adieu_ws_conn_state(&c);
    t->eof = adieu_ws_conn_eof(&c);
    t->done = adieu_ws_conn_done(&c);
    t->msg_active = c.msg_active;
    t->msg_opcode = (int)c.msg_opcode;
    t->msg_len = c.msg_len;
    t->utf8_state = c.utf8.state;
    t->frame_idle = t->state != ADIEU_WS_FAILED && adieu_ws_frame_parser_idle(&c.frame);
    check_state_calls(&c);
    /* Our close echo taken whole completes a handshake the peer began. */
    FUZZ_ASSERT(t->state != ADIEU_WS_REMOTE_CLOSING);
    FUZZ_ASSERT(t->done == (t->state == ADIEU_WS_CLOSED));
    check_output(t);

    adieu_ws_conn_free(&c);
    const uint8_t *p;
    FUZZ_ASSERT(adieu_ws_conn_state(&c) == ADIEU_WS_FAILED && adieu_ws_conn_output(&c, &p) == 0);
    FUZZ_ASSERT(c.assembly.data == NULL && c.ctl == NULL);
}

/* ---------------------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------------------- */

/* Appends a frame header as given (any opcode, bits and length encoding), then the payload
 * masked with key when masked. enc: 0 for the 7-bit length, 1 for 16 bits, 2 for 64. */
static void put_frame(fuzz_bytes_t *s, unsigned b0, bool masked, unsigned enc, uint64_t len,
                      const uint8_t key[4], const uint8_t *payload, size_t plen)
{
    fuzz_put_byte(s, (uint8_t)b0);
    unsigned mask = masked ? 0x80u : 0u;
    if (enc == 0) {
        fuzz_put_byte(s, (uint8_t)(mask | (len & 0x7Fu)));
    } else {
        unsigned bytes = enc == 1 ? 2 : 8;
        fuzz_put_byte(s, (uint8_t)(mask | (enc == 1 ? 126u : 127u)));
        for (unsigned i = 0; i < bytes; i++) {
            fuzz_put_byte(s, (uint8_t)(len >> (8 * (bytes - 1 - i))));
        }
    }
    if (masked) {
        fuzz_put(s, key, 4);
    }
    size_t at = s->n;
    fuzz_put(s, payload, plen);
    if (masked) {
        adieu_ws_mask(s->b + at, plen, key, 0);
    }
}

/* Mode 1: frames of every kind, most of them plausible. */
static void build_any(fuzz_in_t *in, fuzz_bytes_t *s)
{
    fuzz_bytes_t payload = {NULL, 0, 0};
    while (in->n > 0) {
        uint8_t a = fuzz_byte(in);
        uint8_t b = fuzz_byte(in);
        /* Mostly the defined opcodes; now and then any nibble. */
        static const unsigned ops[8] = {0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x1, 0x0};
        unsigned op = (b & 0x80u) ? (a & 0x0Fu) : ops[a & 7u];
        unsigned b0 = op | ((a & 0x80u) ? 0x80u : 0u);
        if ((b & 0x70u) == 0x70u) {
            b0 |= (unsigned)(a & 0x70u); /* RSV bits */
        }
        bool masked = (b & 0x0Fu) != 0x0Fu;
        uint8_t key[4];
        fuzz_bytes(in, key, 4);
        size_t want = fuzz_byte(in);
        payload.n = 0;
        if (b & 0x08u) {
            fuzz_put_text(&payload, in, want);
        } else {
            for (size_t i = 0; i < want && in->n > 0; i++) {
                fuzz_put_byte(&payload, fuzz_byte(in));
            }
        }
        /* The declared length: the payload's own (shortest encoding, or a longer one), or
         * one declared by the input, which the bytes that follow may not match. */
        uint64_t len = payload.n;
        unsigned enc = len < 126 ? 0 : len <= 0xFFFF ? 1 : 2;
        switch (b & 0x03u) {
        case 1:
            enc = enc > 1 ? 2 : enc + 1;
            break;
        case 2:
            enc = (b >> 2) & 1u ? 2 : 1;
            len = enc == 1 ? fuzz_u16(in) : fuzz_u64(in);
            break;
        default:
            break;
        }
        if (enc == 0 && len > 125) {
            enc = 1;
        }
        size_t plen = payload.n < len ? payload.n : (size_t)len;
        put_frame(s, b0, masked, enc, len, key, payload.b, plen);
    }
    fuzz_bytes_free(&payload);
}

/* The expected trace of a valid conversation, and the bytes a client sends for it. */
typedef struct {
    fuzz_bytes_t stream;
    trace_t expect;
} convo_t;

static void put_valid(convo_t *v, unsigned op, bool fin, const uint8_t *p, size_t n, fuzz_in_t *in)
{
    uint8_t key[4];
    fuzz_bytes(in, key, 4);
    uint8_t head[14];
    int h = adieu_ws_frame_header_masked(head, (adieu_ws_opcode_t)op, fin, n, key);
    FUZZ_ASSERT(h > 0);
    fuzz_put(&v->stream, head, (size_t)h);
    size_t at = v->stream.n;
    fuzz_put(&v->stream, p, n);
    adieu_ws_mask(v->stream.b + at, n, key, 0);
}

/* A ping or pong with a payload from the input, and what it must give. */
static void put_control(convo_t *v, fuzz_in_t *in)
{
    uint8_t c = fuzz_byte(in);
    uint8_t payload[ADIEU_WS_MAX_CONTROL] = {0};
    size_t n = (size_t)(c >> 1) % (ADIEU_WS_MAX_CONTROL + 1);
    fuzz_bytes(in, payload, n);
    bool ping = (c & 1u) != 0;
    put_valid(v, ping ? ADIEU_WS_OP_PING : ADIEU_WS_OP_PONG, true, payload, n, in);
    rec_t *r = add_rec(&v->expect, ping ? ADIEU_WS_EV_PING : ADIEU_WS_EV_PONG, payload, n);
    r->state = ADIEU_WS_OPEN;
    if (ping) {
        uint8_t head[10];
        int h = adieu_ws_frame_header(head, ADIEU_WS_OP_PONG, true, n);
        fuzz_put(&v->expect.out, head, (size_t)h);
        fuzz_put(&v->expect.out, payload, n);
    }
}

/* One message cut into fragments, control frames perhaps between them. */
static void put_message(convo_t *v, fuzz_in_t *in, size_t max)
{
    uint8_t c = fuzz_byte(in);
    unsigned op = (c & 1u) ? ADIEU_WS_OP_TEXT : ADIEU_WS_OP_BINARY;
    fuzz_bytes_t msg = {NULL, 0, 0};
    size_t want = fuzz_byte(in);
    if (op == ADIEU_WS_OP_TEXT) {
        fuzz_put_text(&msg, in, want);
    } else {
        for (size_t i = 0; i < want && in->n > 0; i++) {
            fuzz_put_byte(&msg, fuzz_byte(in));
        }
    }
    if (msg.n > max) {
        msg.n = max;
        op = ADIEU_WS_OP_BINARY; /* a cut may split a character */
    }
    size_t fragments = 1 + (size_t)(c >> 1) % 6;
    size_t done = 0;
    for (size_t i = 0; i < fragments; i++) {
        bool last = i + 1 == fragments;
        size_t cut = last ? msg.n - done : fuzz_byte(in) % (msg.n - done + 1);
        const uint8_t *part = msg.b != NULL ? msg.b + done : NULL;
        put_valid(v, i == 0 ? op : ADIEU_WS_OP_CONT, last, part, cut, in);
        done += cut;
        if (!last && (fuzz_byte(in) & 1u)) {
            put_control(v, in);
        }
    }
    rec_t *r = add_rec(&v->expect, ADIEU_WS_EV_MESSAGE, msg.b, msg.n);
    r->opcode = (int)op;
    r->state = ADIEU_WS_OPEN;
    fuzz_bytes_free(&msg);
}

/* The peer's close, then garbage that must be discarded. */
static void put_close(convo_t *v, fuzz_in_t *in)
{
    static const unsigned codes[8] = {1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999};
    uint8_t c = fuzz_byte(in);
    unsigned code = codes[c & 7u];
    fuzz_bytes_t reason = {NULL, 0, 0};
    fuzz_put_text(&reason, in, (size_t)(c >> 3) % 40);
    reason.n = reason.n > 123 ? 0 : reason.n;
    uint8_t payload[125] = {(uint8_t)(code >> 8), (uint8_t)code};
    if (reason.n > 0) {
        memcpy(payload + 2, reason.b, reason.n);
    }
    bool empty = (c & 0x80u) != 0 && reason.n == 0;
    put_valid(v, ADIEU_WS_OP_CLOSE, true, payload, empty ? 0 : 2 + reason.n, in);
    rec_t *r = add_rec(&v->expect, ADIEU_WS_EV_CLOSE, reason.b, reason.n);
    r->code = empty ? 1005 : code;
    r->state = ADIEU_WS_REMOTE_CLOSING;
    uint8_t echo[4] = {0x88, empty ? 0 : 2, (uint8_t)(code >> 8), (uint8_t)code};
    fuzz_put(&v->expect.out, echo, empty ? 2 : 4);
    v->expect.close_queued = true;
    v->expect.state = ADIEU_WS_CLOSED;
    v->expect.done = true;
    fuzz_bytes_free(&reason);
    while (in->n > 0) {
        fuzz_put_byte(&v->stream, fuzz_byte(in));
    }
}

/* Modes 2 and 3: a valid conversation. */
static void build_valid(fuzz_in_t *in, size_t max, convo_t *v)
{
    v->expect.state = ADIEU_WS_OPEN;
    while (in->n > 0) {
        uint8_t c = fuzz_byte(in);
        if (c < 0x10) {
            put_close(v, in);
            return;
        }
        if (c < 0x40) {
            put_control(v, in);
        } else {
            put_message(v, in, max);
        }
    }
}

static void check_expected(const trace_t *want, const trace_t *got)
{
    FUZZ_ASSERT(got->count == want->count);
    for (size_t i = 0; i < want->count; i++) {
        const rec_t *x = &want->ev[i];
        const rec_t *y = &got->ev[i];
        FUZZ_ASSERT(x->type == y->type && x->opcode == y->opcode && x->code == y->code);
        FUZZ_ASSERT(y->fail == 0 && x->len == y->len);
        FUZZ_ASSERT(x->len == 0 ||
                    memcmp(want->data.b + x->off, got->data.b + y->off, x->len) == 0);
    }
    FUZZ_ASSERT(fuzz_bytes_eq(&got->out, want->out.b, want->out.n));
    FUZZ_ASSERT(got->state == want->state && got->done == want->done && got->eof == 0);
}

/* ---------------------------------------------------------------------------------------
 * The harness
 * ------------------------------------------------------------------------------------- */

static script_t read_script(fuzz_in_t *in, bool local_close)
{
    static const unsigned codes[8] = {1000, 1001, 1011, 3000, 4999, 1005, 999, 5000};
    script_t sc;
    memset(&sc, 0, sizeof(sc));
    uint8_t a = fuzz_byte(in);
    uint16_t at = fuzz_u16(in);
    sc.take = fuzz_byte(in);
    sc.close_at = local_close && (a & 1u) ? at : SIZE_MAX;
    sc.code = codes[(a >> 1) & 7u];
    sc.reason_len = (size_t)(a >> 4) * 9; /* 0..135: over 123 is refused */
    for (size_t i = 0; i < sc.reason_len; i++) {
        sc.reason[i] = (uint8_t)('a' + i % 26);
    }
    if ((a & 0x80u) && sc.reason_len > 0) {
        sc.reason[0] = 0xC0; /* invalid UTF-8: refused */
    }
    return sc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = fuzz_in(data, size);
    uint8_t cfg = fuzz_byte(&in);
    size_t max = limits[cfg & 7u];
    unsigned mode = (cfg >> 3) & 3u;
    long budget = (cfg >> 5) >= 5 ? 7 - (cfg >> 5) : -1;
    fuzz_split_t split_a = fuzz_split_read(&in);
    fuzz_split_t split_b = fuzz_split_read(&in);
    script_t sc = read_script(&in, mode < 2);

    convo_t v;
    memset(&v, 0, sizeof(v));
    const uint8_t *s = in.p;
    size_t n = in.n;
    if (mode == 1) {
        build_any(&in, &v.stream);
    } else if (mode >= 2) {
        build_valid(&in, max, &v);
        sc.take = 0xFF; /* every pong is taken before the next ping can replace it */
    }
    if (mode >= 1) {
        s = v.stream.b;
        n = v.stream.n;
    }
    if (sc.close_at != SIZE_MAX) {
        sc.close_at %= n + 1;
    }

    trace_t a;
    trace_t b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    fuzz_alloc_budget(budget);
    run(s, n, max, split_a, &sc, &a);
    fuzz_alloc_budget(budget);
    run(s, n, max, split_b, &sc, &b);
    fuzz_alloc_budget(-1);
    if (budget < 0) {
        same_trace(&a, &b);
        if (mode >= 2) {
            check_expected(&v.expect, &a);
        }
    }
    trace_free(&a);
    trace_free(&b);
    trace_free(&v.expect);
    fuzz_bytes_free(&v.stream);
    return 0;
}
