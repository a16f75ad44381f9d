/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for the framed codec (proto/frame.h).
 *
 * Input: byte 0 picks the prefix width (bit 0), the message limit (bits 1-4) and whether
 * allocations fail (bits 5-7: 7 fails every one, 6 all but the first); bytes 1-2 pick the
 * chunking (fuzz.h); the rest is the stream, fed chunk by chunk, each chunk an exact-size
 * heap copy, calling again after every message until the chunk is consumed.
 *
 * Invariants:
 *   - consumed <= len; 0 only once the whole chunk is consumed; a message moves forward;
 *   - the only errors are ADIEU_ETOOBIG and, when allocations fail, ADIEU_ENOMEM; after
 *     either every call is ADIEU_EINVALID_STATE with nothing consumed;
 *   - a message is within the limit and its bytes lie in the chunk fed or in the parser's
 *     body buffer;
 *   - the messages re-encoded (prefix + payload) equal the input up to the end of the last
 *     message, and agree with an independent whole-stream decoder on how many there are,
 *     where the stream fails and whether it ends between messages; so every chunking gives
 *     the same messages (with failing allocations: the messages delivered before the
 *     ADIEU_ENOMEM are a prefix of those);
 *   - adieu_frame_parser_idle() and _eof() agree with where the stream stopped;
 *   - adieu_frame_prefix() round-trips any length that fits.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/frame.h"

#include "fuzz.h"

static const size_t limits[] = {0, 1, 2, 5, 16, 125, 255, 256, 1000, 65535, 65536, 100000};
#define NUM_LIMITS (sizeof(limits) / sizeof(limits[0]))

/* What the reference decoder makes of a whole stream. */
typedef struct {
    size_t messages;
    size_t msg_end; /* end of the last complete message */
    bool failed;    /* a declared length is over the limit */
    size_t fail_at; /* then: the end of that prefix */
} ref_t;

static ref_t reference(const uint8_t *s, size_t n, unsigned width, size_t max)
{
    ref_t r = {0, 0, false, 0};
    size_t pos = 0;
    while (n - pos >= width) {
        size_t len = 0;
        for (unsigned i = 0; i < width; i++) {
            len = len << 8 | s[pos + i];
        }
        if (len > max) {
            r.failed = true;
            r.fail_at = pos + width;
            break;
        }
        if (n - pos - width < len) {
            break;
        }
        pos += width + len;
        r.messages++;
        r.msg_end = pos;
    }
    return r;
}

typedef struct {
    fuzz_bytes_t reencoded;
    size_t messages;
    int err;        /* 0, or the error the parser returned */
    size_t fail_at; /* bytes consumed in all when it did */
} run_t;

/* Handles one message: checks it and appends its encoding. */
static void on_message(const adieu_frame_parser_t *p, run_t *r, const adieu_frame_msg_t *msg,
                       const uint8_t *chunk, size_t clen)
{
    FUZZ_ASSERT(msg->len <= p->max_message);
    FUZZ_ASSERT(msg->len == 0 || fuzz_inside(msg->data, msg->len, chunk, clen) ||
                fuzz_inside(msg->data, msg->len, p->body.data, p->body.len));
    uint8_t prefix[4];
    int w = adieu_frame_prefix(prefix, p->prefix_bytes, msg->len);
    FUZZ_ASSERT(w == (int)p->prefix_bytes);
    fuzz_put(&r->reencoded, prefix, (size_t)w);
    fuzz_put(&r->reencoded, msg->data, msg->len);
    r->messages++;
}

/* Feeds one chunk (from offset off of the stream) until it is consumed or the parser fails. */
static void feed(adieu_frame_parser_t *p, run_t *r, const uint8_t *src, size_t clen, size_t off)
{
    uint8_t *chunk = fuzz_dup(src, clen);
    size_t pos = 0;
    for (;;) {
        adieu_frame_msg_t msg;
        size_t used = SIZE_MAX;
        int rc = adieu_frame_parse(p, chunk + pos, clen - pos, &used, &msg);
        FUZZ_ASSERT(used <= clen - pos);
        pos += used;
        if (rc == 1) {
            FUZZ_ASSERT(used > 0);
            FUZZ_ASSERT(p->state == ADIEU__FRAME_PREFIX);
            on_message(p, r, &msg, chunk, clen);
            continue;
        }
        if (rc == 0) {
            FUZZ_ASSERT(pos == clen);
            FUZZ_ASSERT(p->state == ADIEU__FRAME_PREFIX || p->state == ADIEU__FRAME_PAYLOAD);
            FUZZ_ASSERT(p->need > 0 &&
                        p->need <= (p->state == ADIEU__FRAME_PREFIX ? p->prefix_bytes : p->len));
            break;
        }
        FUZZ_ASSERT(rc == ADIEU_ETOOBIG || rc == ADIEU_ENOMEM);
        FUZZ_ASSERT(p->state == ADIEU__FRAME_FAILED);
        r->err = rc;
        r->fail_at = off + pos;
        /* FAILED is terminal. */
        used = SIZE_MAX;
        FUZZ_ASSERT(adieu_frame_parse(p, chunk + pos, clen - pos, &used, &msg) ==
                    ADIEU_EINVALID_STATE);
        FUZZ_ASSERT(used == 0);
        break;
    }
    free(chunk);
    if (r->err == 0) {
        /* The empty call that releases a message assembled in the body buffer. */
        adieu_frame_msg_t msg;
        size_t used = SIZE_MAX;
        FUZZ_ASSERT(adieu_frame_parse(p, NULL, 0, &used, &msg) == 0);
        FUZZ_ASSERT(used == 0);
    }
}

static void check_prefix(uint64_t len, unsigned width)
{
    uint8_t out[4];
    int w = adieu_frame_prefix(out, width, (size_t)len);
    uint64_t ceiling = width == 2 ? UINT16_MAX : UINT32_MAX;
    if ((size_t)len > ceiling) {
        FUZZ_ASSERT(w == ADIEU_ETOOBIG);
        return;
    }
    FUZZ_ASSERT(w == (int)width);
    uint64_t back = 0;
    for (unsigned i = 0; i < width; i++) {
        back = back << 8 | out[i];
    }
    FUZZ_ASSERT(back == (size_t)len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = fuzz_in(data, size);
    uint8_t cfg = fuzz_byte(&in);
    unsigned width = (cfg & 1u) ? 4 : 2;
    size_t max = limits[((cfg >> 1) & 15u) % NUM_LIMITS];
    long budget = (cfg >> 5) == 7 ? 0 : (cfg >> 5) == 6 ? 1 : -1;
    fuzz_alloc_budget(budget);
    fuzz_split_t split = fuzz_split_read(&in);
    const uint8_t *s = in.p;
    size_t n = in.n;

    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, width, max);
    size_t ceiling = width == 2 ? UINT16_MAX : UINT32_MAX;
    FUZZ_ASSERT(p.max_message == (max < ceiling ? max : ceiling));
    FUZZ_ASSERT(adieu_frame_parser_idle(&p) && adieu_frame_parser_eof(&p) == 0);

    run_t r;
    memset(&r, 0, sizeof(r));
    for (size_t off = 0; off < n && r.err == 0;) {
        size_t clen = fuzz_split_next(&split, n - off);
        feed(&p, &r, s + off, clen, off);
        off += clen;
    }

    ref_t ref = reference(s, n, width, p.max_message);
    if (r.err == ADIEU_ENOMEM) {
        FUZZ_ASSERT(budget >= 0 && r.messages <= ref.messages && r.reencoded.n <= ref.msg_end);
        FUZZ_ASSERT(fuzz_bytes_eq(&r.reencoded, s, r.reencoded.n));
        FUZZ_ASSERT(adieu_frame_parser_eof(&p) == ADIEU_EINVALID_STATE);
        FUZZ_ASSERT(p.body.data == NULL);
        adieu_frame_parser_free(&p);
        fuzz_bytes_free(&r.reencoded);
        fuzz_alloc_budget(-1);
        return 0;
    }
    FUZZ_ASSERT(r.messages == ref.messages);
    FUZZ_ASSERT(fuzz_bytes_eq(&r.reencoded, s, ref.msg_end));
    if (ref.failed) {
        FUZZ_ASSERT(r.err == ADIEU_ETOOBIG && r.fail_at == ref.fail_at);
        FUZZ_ASSERT(!adieu_frame_parser_idle(&p));
        FUZZ_ASSERT(adieu_frame_parser_eof(&p) == ADIEU_EINVALID_STATE);
    } else {
        FUZZ_ASSERT(r.err == 0);
        bool between = ref.msg_end == n;
        FUZZ_ASSERT(adieu_frame_parser_idle(&p) == between);
        FUZZ_ASSERT(adieu_frame_parser_eof(&p) == (between ? 0 : ADIEU_ETRUNCATED));
    }

    /* Freeing returns a parser inside a message to the start of one; a failed one stays
     * failed. */
    adieu_frame_parser_free(&p);
    FUZZ_ASSERT(p.body.data == NULL);
    FUZZ_ASSERT(adieu_frame_parser_idle(&p) == !ref.failed);

    fuzz_bytes_free(&r.reencoded);
    fuzz_alloc_budget(-1);
    check_prefix(n > 8 ? fuzz_u64(&in) : (uint64_t)n * 4099, width);
    return 0;
}
