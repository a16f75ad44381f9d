/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for the RFC 6455 frame codec (proto/ws_frame.h).
 *
 * Input: byte 0 picks the mode (low 2 bits); bytes 1-2 pick the chunking (fuzz.h).
 *   mode 0, 1  the rest is a raw stream, parsed as a server (0) or a client (1);
 *   mode 2, 3  the rest describes frames (opcode, FIN, length, masking key, payload), which
 *              the writer serialises, masked by the client helpers (2) or unmasked as a
 *              server sends them (3), and the parser of the other side reads back.
 *
 * Invariants:
 *   - consumed <= len; 0 only when the chunk is consumed; every event moves forward; after
 *     ADIEU_EPROTO every call is ADIEU_EINVALID_STATE with nothing consumed;
 *   - events are well formed: one HEADER per frame, then PAYLOAD chunks inside the chunk fed,
 *     without gap, at least one byte each, `last` exactly at the declared length;
 *   - raw streams: the frames, their unmasked payloads, the error and the bytes consumed up
 *     to it agree with an independent whole-stream decoder, so every chunking agrees;
 *   - built streams: parse(serialize(x)) == x for every frame the writer accepts; the writer
 *     refuses exactly what RFC 6455 forbids and otherwise uses the shortest length encoding;
 *     a 64-bit length round-trips through the header alone;
 *   - adieu_ws_mask() equals a byte-at-a-time XOR, whatever the alignment and phase, and
 *     masking in two pieces (the phase carried) equals masking at once.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/ws_frame.h"

#include "fuzz.h"

/* ---------------------------------------------------------------------------------------
 * Traces: the frames of a stream as the parser (or the reference, or the writer) saw them
 * ------------------------------------------------------------------------------------- */

typedef struct {
    unsigned opcode;
    bool fin;
    uint64_t len;
    size_t off; /* of its payload in trace_t.payload */
    size_t got; /* payload bytes seen */
} frame_t;

typedef struct {
    frame_t *f;
    size_t count;
    size_t cap;
    fuzz_bytes_t payload;
    int rc;    /* 0 or ADIEU_EPROTO */
    size_t at; /* bytes consumed in all */
} trace_t;

static frame_t *add_frame(trace_t *t, unsigned opcode, bool fin, uint64_t len)
{
    if (t->count == t->cap) {
        t->cap = t->cap * 2 + 16;
        frame_t *f = realloc(t->f, t->cap * sizeof(*f));
        FUZZ_ASSERT(f != NULL);
        t->f = f;
    }
    frame_t *f = &t->f[t->count++];
    f->opcode = opcode;
    f->fin = fin;
    f->len = len;
    f->off = t->payload.n;
    f->got = 0;
    return f;
}

static void trace_free(trace_t *t)
{
    free(t->f);
    fuzz_bytes_free(&t->payload);
    memset(t, 0, sizeof(*t));
}

static void same_trace(const trace_t *a, const trace_t *b)
{
    FUZZ_ASSERT(a->count == b->count);
    FUZZ_ASSERT(a->rc == b->rc && a->at == b->at);
    for (size_t i = 0; i < a->count; i++) {
        const frame_t *x = &a->f[i];
        const frame_t *y = &b->f[i];
        FUZZ_ASSERT(x->opcode == y->opcode && x->fin == y->fin && x->len == y->len);
        FUZZ_ASSERT(x->off == y->off && x->got == y->got);
    }
    FUZZ_ASSERT(fuzz_bytes_eq(&a->payload, b->payload.b, b->payload.n));
}

/* ---------------------------------------------------------------------------------------
 * The reference decoder: RFC 6455 §5.2 over a whole stream, one field after another.
 * ------------------------------------------------------------------------------------- */

static bool ref_defined(unsigned op)
{
    return op == 0x0 || op == 0x1 || op == 0x2 || op == 0x8 || op == 0x9 || op == 0xA;
}

/* Decodes s[0..n); returns true when the stream ends exactly between frames. */
static bool reference(const uint8_t *s, size_t n, adieu_ws_role_t role, trace_t *t)
{
    size_t pos = 0;
    for (;;) {
        if (pos == n) {
            t->at = n;
            return true;
        }
        if (n - pos < 2) {
            t->at = n;
            return false;
        }
        unsigned b0 = s[pos];
        unsigned b1 = s[pos + 1];
        unsigned op = b0 & 0x0Fu;
        bool fin = (b0 & 0x80u) != 0;
        bool masked = (b1 & 0x80u) != 0;
        uint64_t len = b1 & 0x7Fu;
        bool control = (op & 0x8u) != 0;
        pos += 2;
        if ((b0 & 0x70u) != 0 || !ref_defined(op) || (control && (!fin || len > 125)) ||
            masked != (role == ADIEU_WS_SERVER)) {
            t->rc = ADIEU_EPROTO;
            t->at = pos;
            return false;
        }
        size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;
        if (n - pos < ext) {
            t->at = n;
            return false;
        }
        if (ext > 0) {
            len = 0;
            for (size_t i = 0; i < ext; i++) {
                len = len << 8 | s[pos + i];
            }
            pos += ext;
            bool minimal = ext == 2 ? len >= 126 : len > 0xFFFF;
            if ((ext == 8 && (len >> 63) != 0) || !minimal) {
                t->rc = ADIEU_EPROTO;
                t->at = pos;
                return false;
            }
        }
        uint8_t key[4] = {0, 0, 0, 0};
        if (masked) {
            if (n - pos < 4) {
                t->at = n;
                return false;
            }
            memcpy(key, s + pos, 4);
            pos += 4;
        }
        frame_t *f = add_frame(t, op, fin, len);
        size_t avail = n - pos;
        size_t take = len < avail ? (size_t)len : avail;
        for (size_t i = 0; i < take; i++) {
            fuzz_put_byte(&t->payload, (uint8_t)(s[pos + i] ^ key[i & 3u]));
        }
        f->got = take;
        pos += take;
        if (take < len) {
            t->at = n;
            return false;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Driving the parser
 * ------------------------------------------------------------------------------------- */

static void on_event(trace_t *t, const adieu_ws_frame_event_t *ev, const uint8_t *chunk,
                     size_t clen)
{
    FUZZ_ASSERT(ref_defined(ev->opcode));
    if (ev->type == ADIEU_WS_FRAME_HEADER) {
        FUZZ_ASSERT(t->count == 0 || t->f[t->count - 1].got == t->f[t->count - 1].len);
        FUZZ_ASSERT(ev->last == (ev->frame_len == 0));
        if (adieu_ws_opcode_is_control(ev->opcode)) {
            FUZZ_ASSERT(ev->fin && ev->frame_len <= ADIEU_WS_MAX_CONTROL);
        }
        FUZZ_ASSERT((ev->frame_len >> 63) == 0);
        add_frame(t, ev->opcode, ev->fin, ev->frame_len);
        return;
    }
    FUZZ_ASSERT(ev->type == ADIEU_WS_FRAME_PAYLOAD);
    FUZZ_ASSERT(t->count > 0);
    frame_t *f = &t->f[t->count - 1];
    FUZZ_ASSERT(ev->opcode == f->opcode && ev->fin == f->fin && ev->frame_len == f->len);
    FUZZ_ASSERT(ev->len >= 1 && ev->offset == f->got && ev->len <= f->len - f->got);
    FUZZ_ASSERT(ev->last == (f->got + ev->len == f->len));
    FUZZ_ASSERT(fuzz_inside(ev->data, ev->len, chunk, clen));
    fuzz_put(&t->payload, ev->data, ev->len);
    f->got += ev->len;
}

/* Feeds one chunk (a private copy, unmasked in place) until it is consumed or fails. */
static void feed(adieu_ws_frame_parser_t *p, trace_t *t, const uint8_t *src, size_t clen)
{
    uint8_t *chunk = fuzz_dup(src, clen);
    size_t pos = 0;
    for (;;) {
        adieu_ws_frame_event_t ev;
        size_t used = SIZE_MAX;
        int rc = adieu_ws_frame_parse(p, chunk + pos, clen - pos, &used, &ev);
        FUZZ_ASSERT(used <= clen - pos);
        pos += used;
        FUZZ_ASSERT(p->state >= ADIEU__WSF_HEAD && p->state <= ADIEU__WSF_FAILED);
        if (rc == 1) {
            FUZZ_ASSERT(used > 0);
            on_event(t, &ev, chunk, clen);
            continue;
        }
        if (rc == 0) {
            FUZZ_ASSERT(pos == clen && p->state != ADIEU__WSF_FAILED && p->need > 0);
            break;
        }
        FUZZ_ASSERT(rc == ADIEU_EPROTO && p->state == ADIEU__WSF_FAILED && p->why != NULL);
        t->rc = rc;
        t->at += pos;
        used = SIZE_MAX;
        FUZZ_ASSERT(adieu_ws_frame_parse(p, chunk + pos, clen - pos, &used, &ev) ==
                    ADIEU_EINVALID_STATE);
        FUZZ_ASSERT(used == 0);
        free(chunk);
        return;
    }
    t->at += clen;
    free(chunk);
    /* An empty input reports nothing. */
    adieu_ws_frame_event_t ev;
    size_t used = SIZE_MAX;
    FUZZ_ASSERT(adieu_ws_frame_parse(p, NULL, 0, &used, &ev) == 0 && used == 0);
}

/* Parses s[0..n) in the chunks split gives; returns whether the parser ended idle. */
static bool parse_stream(const uint8_t *s, size_t n, adieu_ws_role_t role, fuzz_split_t split,
                         trace_t *t)
{
    adieu_ws_frame_parser_t p;
    adieu_ws_frame_parser_init(&p, role);
    FUZZ_ASSERT(adieu_ws_frame_parser_idle(&p));
    if (split.mode == FUZZ_SPLIT_BYTES && n > 4096) {
        /* A built 64 KiB frame a byte per call costs more than it finds: small random chunks
         * still cut every field and key phase. */
        split.mode = FUZZ_SPLIT_RANDOM;
    }
    for (size_t off = 0; off < n && t->rc == 0;) {
        size_t clen = fuzz_split_next(&split, n - off);
        feed(&p, t, s + off, clen);
        off += clen;
    }
    if (p.state == ADIEU__WSF_PAYLOAD) {
        FUZZ_ASSERT(t->count > 0 && p.need == t->f[t->count - 1].len - t->f[t->count - 1].got);
    }
    return adieu_ws_frame_parser_idle(&p);
}

/* ---------------------------------------------------------------------------------------
 * The masking helper
 * ------------------------------------------------------------------------------------- */

static void check_mask(const uint8_t *src, size_t n, const uint8_t key[4], unsigned phase,
                       size_t shift, size_t cut)
{
    uint8_t *block = fuzz_alloc(shift + n);
    uint8_t *a = block + shift;
    uint8_t *b = fuzz_dup(src, n);
    if (n > 0) {
        memcpy(a, src, n);
    }
    unsigned next = adieu_ws_mask(a, n, key, phase);
    FUZZ_ASSERT(next == ((phase + n) & 3u));
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT(a[i] == (uint8_t)(src[i] ^ key[(phase + i) & 3u]));
    }
    cut = n > 0 ? cut % (n + 1) : 0;
    unsigned mid = adieu_ws_mask(b, cut, key, phase);
    FUZZ_ASSERT(adieu_ws_mask(b + cut, n - cut, key, mid) == next);
    FUZZ_ASSERT(n == 0 || memcmp(a, b, n) == 0);
    adieu_ws_mask(a, n, key, phase);
    FUZZ_ASSERT(n == 0 || memcmp(a, src, n) == 0);
    free(b);
    free(block);
}

/* ---------------------------------------------------------------------------------------
 * Built streams: the writer, then the parser
 * ------------------------------------------------------------------------------------- */

static const unsigned opcodes[8] = {0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB};
/* Total payload bytes a built stream may hold: room for one frame with a 64-bit length
 * (65536 bytes and over), while keeping every run fast. */
#define BUILT_MAX ((size_t)70 * 1000)

/* The header the writer must produce, or 0 when it must refuse. */
static size_t expected_header(unsigned op, bool fin, uint64_t len, bool masked)
{
    bool control = (op & 0x8u) != 0;
    if (!ref_defined(op) || (control && (!fin || len > 125)) || (len >> 63) != 0) {
        return 0;
    }
    size_t h = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
    return h + (masked ? 4 : 0);
}

/* Writes a header; checks the result against expected_header(). Returns its size or 0. */
static size_t write_header(uint8_t out[14], unsigned op, bool fin, uint64_t len, bool masked,
                           const uint8_t key[4])
{
    int h = masked ? adieu_ws_frame_header_masked(out, (adieu_ws_opcode_t)op, fin, len, key)
                   : adieu_ws_frame_header(out, (adieu_ws_opcode_t)op, fin, len);
    size_t want = expected_header(op, fin, len, masked);
    if (want == 0) {
        FUZZ_ASSERT(h == ADIEU_EINVAL);
        return 0;
    }
    FUZZ_ASSERT(h == (int)want);
    FUZZ_ASSERT(out[0] == ((fin ? 0x80u : 0u) | op));
    FUZZ_ASSERT(((out[1] & 0x80u) != 0) == masked);
    if (masked) {
        FUZZ_ASSERT(memcmp(out + want - 4, key, 4) == 0);
    }
    return want;
}

/* A frame with a 64-bit length goes through the header alone: the parser must report that
 * length and wait for the payload. */
static void check_long_header(unsigned op, bool fin, uint64_t len, bool masked,
                              const uint8_t key[4])
{
    uint8_t head[14];
    size_t h = write_header(head, op, fin, len, masked, key);
    if (h == 0) {
        return;
    }
    adieu_ws_frame_parser_t p;
    adieu_ws_frame_parser_init(&p, masked ? ADIEU_WS_SERVER : ADIEU_WS_CLIENT);
    adieu_ws_frame_event_t ev;
    size_t used = 0;
    FUZZ_ASSERT(adieu_ws_frame_parse(&p, head, h, &used, &ev) == 1 && used == h);
    FUZZ_ASSERT(ev.type == ADIEU_WS_FRAME_HEADER && (unsigned)ev.opcode == op && ev.fin == fin);
    FUZZ_ASSERT(ev.frame_len == len);
    FUZZ_ASSERT(len == 0 ? adieu_ws_frame_parser_idle(&p)
                         : p.state == ADIEU__WSF_PAYLOAD && p.need == len);
}

static uint64_t built_length(fuzz_in_t *in, unsigned cls)
{
    static const uint64_t edges[8] = {0, 125, 126, 127, 0xFFFF, 0x10000, 0x10001, 200};
    switch (cls) {
    case 0:
        return fuzz_byte(in) % 126u;
    case 1:
        return 126 + fuzz_u16(in) % 1024u;
    case 2:
        return edges[fuzz_byte(in) & 7u];
    default:
        return fuzz_u64(in);
    }
}

/* Builds a stream from the input; the expected trace is what the writer was given. */
static void build(fuzz_in_t *in, bool masked, fuzz_bytes_t *stream, trace_t *expect)
{
    size_t total = 0;
    while (in->n > 0 && expect->count < 256) {
        uint8_t b = fuzz_byte(in);
        unsigned op = opcodes[b & 7u];
        bool fin = (b & 8u) != 0;
        uint64_t len = built_length(in, (b >> 4) & 3u);
        uint8_t key[4];
        fuzz_bytes(in, key, 4);
        if (((b >> 4) & 3u) == 3) {
            check_long_header(op, fin, len, masked, key);
            continue;
        }
        if (len > BUILT_MAX - total) {
            len %= 126;
        }
        uint8_t head[14];
        size_t h = write_header(head, op, fin, len, masked, key);
        if (h == 0) {
            continue;
        }
        total += (size_t)len;
        fuzz_put(stream, head, h);
        frame_t *f = add_frame(expect, op, fin, len);
        size_t at = stream->n;
        /* The payload: input bytes, then a pattern once the input runs out. */
        uint8_t *payload = fuzz_alloc((size_t)len);
        size_t from_input = in->n < len ? in->n : (size_t)len;
        fuzz_bytes(in, payload, from_input);
        for (size_t i = from_input; i < len; i++) {
            payload[i] = (uint8_t)(i * 31 + len);
        }
        fuzz_put(&expect->payload, payload, (size_t)len);
        fuzz_put(stream, payload, (size_t)len);
        free(payload);
        f->got = (size_t)len;
        if (masked) {
            /* RFC 6455 §5.3: the client masks the payload from key octet 0, here in two
             * pieces to carry the phase across. */
            size_t cut = (size_t)(b >> 6) * (size_t)len / 3;
            unsigned ph = adieu_ws_mask(stream->b + at, cut, key, 0);
            adieu_ws_mask(stream->b + at + cut, (size_t)len - cut, key, ph);
        }
    }
    expect->at = stream->n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = fuzz_in(data, size);
    uint8_t cfg = fuzz_byte(&in);
    fuzz_split_t split = fuzz_split_read(&in);
    unsigned mode = cfg & 3u;

    /* The masking helper, on the input itself. */
    uint8_t key[4] = {cfg, (uint8_t)(cfg * 3), (uint8_t)(size), (uint8_t)(size >> 8)};
    check_mask(in.p, in.n, key, (cfg >> 2) & 3u, (cfg >> 4) & 7u, size * 7);

    trace_t expect;
    trace_t got;
    memset(&expect, 0, sizeof(expect));
    memset(&got, 0, sizeof(got));
    if (mode < 2) {
        adieu_ws_role_t role = mode == 0 ? ADIEU_WS_SERVER : ADIEU_WS_CLIENT;
        bool clean = reference(in.p, in.n, role, &expect);
        bool idle = parse_stream(in.p, in.n, role, split, &got);
        same_trace(&expect, &got);
        FUZZ_ASSERT(idle == clean);
    } else {
        bool masked = mode == 2;
        fuzz_bytes_t stream = {NULL, 0, 0};
        build(&in, masked, &stream, &expect);
        adieu_ws_role_t role = masked ? ADIEU_WS_SERVER : ADIEU_WS_CLIENT;
        bool idle = parse_stream(stream.b, stream.n, role, split, &got);
        same_trace(&expect, &got);
        FUZZ_ASSERT(idle && got.rc == 0);
        fuzz_bytes_free(&stream);
    }
    trace_free(&expect);
    trace_free(&got);
    return 0;
}
