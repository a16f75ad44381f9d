/* SPDX-License-Identifier: MIT */
/*
 * The RFC 6455 frame codec of proto/ws_frame.h.
 *
 * The header is read field by field (two fixed bytes, the extended length, the masking key),
 * each read where it lies when the input holds all of it (the usual case) and otherwise
 * gathered into p->field however the input is split, and each checked the moment it is
 * complete. The payload is never copied: each call hands out the part of it that the input
 * holds, unmasked in place, so a 1 GiB frame costs no memory here and its limit is the
 * caller's decision, taken on the HEADER event before any payload byte is seen.
 */
#include "proto/ws_frame.h"

#include <assert.h>
#include <string.h>

#include "adieu/errors.h"

#define FIN_BIT 0x80u
#define RSV_BITS 0x70u
#define OPCODE_BITS 0x0Fu
#define MASK_BIT 0x80u
#define LEN7_BITS 0x7Fu
#define LEN7_16BIT 126u
#define LEN7_64BIT 127u

/* RFC 6455 §5.2: 0x3..0x7 are reserved for further non-control frames, 0xB..0xF for further
 * control frames. */
static bool opcode_defined(unsigned op)
{
    return op <= ADIEU_WS_OP_BINARY || (op >= ADIEU_WS_OP_CLOSE && op <= ADIEU_WS_OP_PONG);
}

/* Waits for a header field of size bytes (the next frame's first two bytes for HEAD). */
static void start_field(adieu_ws_frame_parser_t *p, adieu_ws_frame_state_t state, uint8_t size)
{
    p->state = state;
    p->field_len = size;
    p->need = size;
}

void adieu_ws_frame_parser_init(adieu_ws_frame_parser_t *p, adieu_ws_role_t role)
{
    assert(p != NULL);
    assert(role == ADIEU_WS_SERVER || role == ADIEU_WS_CLIENT);
    memset(p, 0, sizeof(*p));
    p->role = role;
    start_field(p, ADIEU__WSF_HEAD, 2);
}

bool adieu_ws_frame_parser_idle(const adieu_ws_frame_parser_t *p)
{
    assert(p != NULL);
    return p->state == ADIEU__WSF_HEAD && p->need == 2;
}

static int fail(adieu_ws_frame_parser_t *p, const char *why)
{
    p->state = ADIEU__WSF_FAILED;
    p->why = why;
    return ADIEU_EPROTO;
}

/* Copies as much of the current header field as the input holds; returns the bytes taken. */
static size_t gather(adieu_ws_frame_parser_t *p, const uint8_t *in, size_t avail)
{
    size_t take = p->need < avail ? (size_t)p->need : avail;
    if (take > 0) {
        memcpy(p->field + (p->field_len - p->need), in, take);
        p->need -= take;
    }
    return take;
}

/* RFC 6455 §5.2: multibyte length quantities are in network byte order. n is 2 or 8. */
static uint64_t big_endian(const uint8_t *b, unsigned n)
{
    if (n == 2) {
        return (uint64_t)b[0] << 8 | b[1];
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

/* The header is complete: reports it and moves to its payload, or to the next frame when
 * the payload is empty. Always returns 1. */
static int header_done(adieu_ws_frame_parser_t *p, adieu_ws_frame_event_t *ev)
{
    ev->type = ADIEU_WS_FRAME_HEADER;
    ev->opcode = p->opcode;
    ev->fin = p->fin;
    ev->frame_len = p->len;
    ev->data = NULL;
    ev->len = 0;
    ev->offset = 0;
    ev->last = p->len == 0;
    p->phase = 0;
    if (p->len == 0) {
        start_field(p, ADIEU__WSF_HEAD, 2);
    } else {
        p->state = ADIEU__WSF_PAYLOAD;
        p->need = p->len;
    }
    return 1;
}

/* After the length: the masking key, if any, then the payload. */
static int length_done(adieu_ws_frame_parser_t *p, adieu_ws_frame_event_t *ev)
{
    if (p->masked) {
        start_field(p, ADIEU__WSF_MASKKEY, 4);
        return 0;
    }
    return header_done(p, ev);
}

/* Checks the two fixed header bytes at f. Returns 1 with a HEADER event (a short unmasked
 * frame is then complete), 0 to go on, or ADIEU_EPROTO. */
static int check_head(adieu_ws_frame_parser_t *p, const uint8_t *f, adieu_ws_frame_event_t *ev)
{
    unsigned b0 = f[0];
    unsigned b1 = f[1];
    /* RFC 6455 §5.2: "RSV1, RSV2, RSV3: MUST be 0 unless an extension is negotiated". */
    if (b0 & RSV_BITS) {
        return fail(p, "reserved bits set");
    }
    /* RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail
     * the WebSocket Connection_". */
    if (!opcode_defined(b0 & OPCODE_BITS)) {
        return fail(p, "reserved opcode");
    }
    p->opcode = (adieu_ws_opcode_t)(b0 & OPCODE_BITS);
    p->fin = (b0 & FIN_BIT) != 0;
    p->masked = (b1 & MASK_BIT) != 0;
    bool control = adieu_ws_opcode_is_control(p->opcode);
    /* RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less and
     * MUST NOT be fragmented." */
    if (control && !p->fin) {
        return fail(p, "fragmented control frame");
    }
    if (control && (b1 & LEN7_BITS) > ADIEU_WS_MAX_CONTROL) {
        return fail(p, "control frame over 125 bytes");
    }
    /* RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is
     * not masked", and a client upon receiving one that is. */
    if (p->role == ADIEU_WS_SERVER && !p->masked) {
        return fail(p, "unmasked client frame");
    }
    if (p->role == ADIEU_WS_CLIENT && p->masked) {
        return fail(p, "masked server frame");
    }
    unsigned len7 = b1 & LEN7_BITS;
    if (len7 == LEN7_16BIT || len7 == LEN7_64BIT) {
        start_field(p, ADIEU__WSF_EXTLEN, len7 == LEN7_16BIT ? 2 : 8);
        return 0;
    }
    p->len = len7;
    return length_done(p, ev);
}

/* Checks the extended length at f. RFC 6455 §5.2: "the minimal number of bytes MUST be used
 * to encode the length", and of a 64-bit length "the most significant bit MUST be 0". */
static int check_extlen(adieu_ws_frame_parser_t *p, const uint8_t *f, adieu_ws_frame_event_t *ev)
{
    if (p->field_len == 8 && (f[0] & 0x80u)) {
        return fail(p, "64-bit length with the high bit set");
    }
    p->len = big_endian(f, p->field_len);
    uint64_t shortest = p->field_len == 2 ? LEN7_16BIT : UINT64_C(0x10000);
    if (p->len < shortest) {
        return fail(p, "length not minimally encoded");
    }
    return length_done(p, ev);
}

/* Hands out the part of the payload that the input holds, unmasked in place. */
static size_t payload_chunk(adieu_ws_frame_parser_t *p, uint8_t *in, size_t avail,
                            adieu_ws_frame_event_t *ev)
{
    size_t n = p->need < avail ? (size_t)p->need : avail;
    if (p->masked) {
        p->phase = adieu_ws_mask(in, n, p->key, p->phase);
    }
    ev->type = ADIEU_WS_FRAME_PAYLOAD;
    ev->opcode = p->opcode;
    ev->fin = p->fin;
    ev->frame_len = p->len;
    ev->data = in;
    ev->len = n;
    ev->offset = p->len - p->need;
    ev->last = n == p->need;
    p->need -= n;
    if (p->need == 0) {
        start_field(p, ADIEU__WSF_HEAD, 2);
    }
    return n;
}

/* Reads header fields from data (len > 0) until the header is complete (a HEADER event), the
 * input runs out, or a field breaks a rule; sets *consumed. Returns like
 * adieu_ws_frame_parse(). */
static int parse_header(adieu_ws_frame_parser_t *p, const uint8_t *data, size_t len,
                        size_t *consumed, adieu_ws_frame_event_t *ev)
{
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        /* The field's bytes: read where they are when the input holds the whole field and
         * none of it was gathered before (the usual case), else gathered into p->field. The
         * checks and the bytes consumed are the same either way. */
        const uint8_t *f;
        if (p->need == p->field_len && len - pos >= p->field_len) {
            f = data + pos;
            pos += p->field_len;
            p->need = 0;
        } else {
            pos += gather(p, data + pos, len - pos);
            if (p->need > 0) {
                break;
            }
            f = p->field;
        }
        switch (p->state) {
        case ADIEU__WSF_HEAD:
            rc = check_head(p, f, ev);
            break;
        case ADIEU__WSF_EXTLEN:
            rc = check_extlen(p, f, ev);
            break;
        case ADIEU__WSF_MASKKEY:
            memcpy(p->key, f, 4);
            rc = header_done(p, ev);
            break;
        default:
            assert(false && "unreachable parser state");
            break;
        }
    }
    *consumed = pos;
    return rc;
}

int adieu_ws_frame_parse(adieu_ws_frame_parser_t *p, uint8_t *data, size_t len, size_t *consumed,
                         adieu_ws_frame_event_t *ev)
{
    assert(p != NULL && consumed != NULL && ev != NULL);
    assert(data != NULL || len == 0);
    assert(p->state >= ADIEU__WSF_HEAD && p->state <= ADIEU__WSF_FAILED);
    *consumed = 0;
    if (p->state == ADIEU__WSF_FAILED) {
        return ADIEU_EINVALID_STATE;
    }
    /* NOTE: every state needs at least one byte to make progress (a field or payload is
     * never left with need == 0), so an empty input has nothing to report. This also keeps
     * data + pos from ever being NULL + 0. */
    if (len == 0) {
        return 0;
    }
    /* A payload chunk is one event and the end of the call; a header never follows it in
     * the same call, so the header loop is not entered for it. */
    if (p->state == ADIEU__WSF_PAYLOAD) {
        *consumed = payload_chunk(p, data, len, ev);
        return 1;
    }
    return parse_header(p, data, len, consumed, ev);
}

int adieu_ws_frame_header(uint8_t out[10], adieu_ws_opcode_t opcode, bool fin, uint64_t payload_len)
{
    assert(out != NULL);
    if (!opcode_defined((unsigned)opcode) || (payload_len >> 63) != 0) {
        return ADIEU_EINVAL;
    }
    if (adieu_ws_opcode_is_control(opcode) && (!fin || payload_len > ADIEU_WS_MAX_CONTROL)) {
        return ADIEU_EINVAL;
    }
    out[0] = (uint8_t)((fin ? FIN_BIT : 0u) | (unsigned)opcode);
    if (payload_len < LEN7_16BIT) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    unsigned n = payload_len <= UINT16_MAX ? 2 : 8;
    out[1] = (uint8_t)(n == 2 ? LEN7_16BIT : LEN7_64BIT);
    for (unsigned i = 0; i < n; i++) {
        out[2 + i] = (uint8_t)(payload_len >> (8 * (n - 1 - i)));
    }
    return (int)(2 + n);
}

int adieu_ws_frame_header_masked(uint8_t out[14], adieu_ws_opcode_t opcode, bool fin,
                                 uint64_t payload_len, const uint8_t key[4])
{
    assert(out != NULL && key != NULL);
    int n = adieu_ws_frame_header(out, opcode, fin, payload_len);
    if (n < 0) {
        return n;
    }
    out[1] |= MASK_BIT;
    memcpy(out + n, key, 4);
    return n + 4;
}

/* Fewer than 32 bytes (most chat and game messages): words that overlap instead of loops.
 * The word at offset o takes the key rotated by (phase + o) mod 4, so a word ending at len
 * takes the rotation by (phase + len) mod 4 whatever its size. Every word is loaded before
 * any is stored: a byte covered twice gets the same value from both. */
static unsigned mask_short(uint8_t *data, size_t len, const uint8_t rep[12], uint64_t k,
                           unsigned phase)
{
    unsigned end = (phase + (unsigned)len) & 3u;
    if (len >= 8) {
        uint64_t kt;
        memcpy(&kt, rep + end, 8);
        uint64_t a;
        uint64_t b;
        memcpy(&a, data, 8);
        memcpy(&b, data + len - 8, 8);
        if (len > 16) {
            uint64_t c;
            uint64_t d;
            memcpy(&c, data + 8, 8);
            memcpy(&d, data + len - 16, 8);
            c ^= k;
            d ^= kt;
            memcpy(data + 8, &c, 8);
            memcpy(data + len - 16, &d, 8);
        }
        a ^= k;
        b ^= kt;
        memcpy(data, &a, 8);
        memcpy(data + len - 8, &b, 8);
    } else if (len >= 4) {
        uint32_t k4;
        uint32_t kt;
        memcpy(&k4, rep + phase, 4);
        memcpy(&kt, rep + end, 4);
        uint32_t a;
        uint32_t b;
        memcpy(&a, data, 4);
        memcpy(&b, data + len - 4, 4);
        a ^= k4;
        b ^= kt;
        memcpy(data, &a, 4);
        memcpy(data + len - 4, &b, 4);
    } else {
        for (size_t j = 0; j < len; j++) {
            data[j] ^= rep[phase + j];
        }
    }
    return end;
}

unsigned adieu_ws_mask(uint8_t *data, size_t len, const uint8_t key[4], unsigned phase)
{
    assert(data != NULL || len == 0);
    assert(key != NULL && phase < 4);
    /* The key three times over: the 8 bytes from rep + phase are the key rotated to the
     * current phase, and since 8 is a multiple of 4 the same word lines up with every 8-byte
     * step. Three fixed-size copies and one load cost less than gathering the rotated key a
     * byte at a time. memcpy keeps the loads and stores free of alignment and aliasing
     * concerns; compilers turn them into plain moves. */
    uint8_t rep[12];
    memcpy(rep, key, 4);
    memcpy(rep + 4, key, 4);
    memcpy(rep + 8, key, 4);
    uint64_t k;
    memcpy(&k, rep + phase, 8);
    if (len < 32) {
        return mask_short(data, len, rep, k, phase);
    }
    size_t i = 0;
    /* NOTE: four separate words, not an array: an array is stored to the stack and reloaded,
     * locals stay in registers. */
    for (; len - i >= 32; i += 32) {
        uint64_t w0;
        uint64_t w1;
        uint64_t w2;
        uint64_t w3;
        memcpy(&w0, data + i, 8);
        memcpy(&w1, data + i + 8, 8);
        memcpy(&w2, data + i + 16, 8);
        memcpy(&w3, data + i + 24, 8);
        w0 ^= k;
        w1 ^= k;
        w2 ^= k;
        w3 ^= k;
        memcpy(data + i, &w0, 8);
        memcpy(data + i + 8, &w1, 8);
        memcpy(data + i + 16, &w2, 8);
        memcpy(data + i + 24, &w3, 8);
    }
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        w ^= k;
        memcpy(data + i, &w, 8);
    }
    /* Fewer than 8 bytes are left, and i is a multiple of 8: byte i + j takes key octet
     * (phase + j) mod 4, which is rep[phase + j]. */
    for (size_t j = 0; i + j < len; j++) {
        data[i + j] ^= rep[phase + j];
    }
    return (unsigned)((phase + len) & 3u);
}

bool adieu_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}
