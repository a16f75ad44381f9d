/* SPDX-License-Identifier: MIT */
/*
 * The framed protocol codec (SPEC P1): a big-endian length prefix of 2 or 4 bytes, then that
 * many payload bytes. Sans-I/O: the caller feeds bytes and receives messages, one per call.
 *
 * A payload that lies wholly inside the caller's input is handed back in place, without a
 * copy; only a payload split across inputs is assembled in the parser's body buffer. The
 * limit is checked on the declared length, so a peer cannot make us allocate or copy more
 * than max_message bytes by announcing a large message.
 */
#include "proto/frame.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "adieu/errors.h"

/* Storage the body buffer may keep between messages. Larger storage, left by an unusually big
 * message, is freed after delivery so that an idle connection does not hold on to it; 64 KiB
 * keeps every 2-byte-prefix message (at most 65535 bytes) allocation-free in steady state. */
#define BODY_KEEP ((size_t)64 * 1024)

/* Waits for the next message's prefix. */
static void start_prefix(adieu_frame_parser_t *p)
{
    p->state = ADIEU__FRAME_PREFIX;
    p->need = p->prefix_bytes;
    p->len = 0;
}

void adieu_frame_parser_init(adieu_frame_parser_t *p, unsigned prefix_bytes, size_t max_message)
{
    assert(p != NULL);
    assert(prefix_bytes == 2 || prefix_bytes == 4);
    /* A prefix cannot declare more than its width allows, so capping here keeps max_message
     * truthful as "the largest message this parser will deliver" (SPEC section 4: with a
     * 2-byte prefix, at most 65535 bytes whatever --max-message says). */
    size_t ceiling = prefix_bytes == 2 ? UINT16_MAX : UINT32_MAX;
    p->prefix_bytes = prefix_bytes;
    p->max_message = max_message < ceiling ? max_message : ceiling;
    memset(p->prefix, 0, sizeof(p->prefix));
    adieu_buf_init(&p->body);
    p->pool = NULL;
    start_prefix(p);
}

/* Besides freeing the storage, returns a parser that was inside a message to the start of a
 * message: its body buffer no longer holds the bytes gathered so far, so it cannot go on
 * assembling. A failed parser stays failed. */
void adieu_frame_parser_free(adieu_frame_parser_t *p)
{
    assert(p != NULL);
    adieu_buf_free(&p->body);
    if (p->state != ADIEU__FRAME_FAILED) {
        start_prefix(p);
    }
}

/* Copies as much of the prefix as the input holds; returns the number of bytes taken. */
static size_t gather_prefix(adieu_frame_parser_t *p, const uint8_t *in, size_t avail)
{
    size_t take = p->need < avail ? p->need : avail;
    memcpy(p->prefix + (p->prefix_bytes - p->need), in, take);
    p->need -= take;
    return take;
}

/* SPEC P1: the length is big-endian (network byte order). b holds the whole prefix, 2 or 4
 * bytes: two fixed shapes rather than a loop over a runtime width. */
static size_t decode_prefix(const uint8_t *b, unsigned prefix_bytes)
{
    if (prefix_bytes == 2) {
        return (size_t)b[0] << 8 | b[1];
    }
    return (size_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
}

/* Copies the part of a split payload that this input holds into the body buffer and returns
 * the number of bytes taken, or ADIEU_ENOMEM. A message that fits the storage kept between
 * messages is reserved whole on its first piece, so it never reallocates; a larger one grows
 * (geometrically, in adieu_buf_reserve) only as its bytes arrive, so a peer that declares a
 * large message and sends little of it cannot make us hold more than it sent. */
static int assemble(adieu_frame_parser_t *p, const uint8_t *in, size_t avail, size_t *taken)
{
    size_t take = p->need < avail ? p->need : avail;
    size_t want = p->len <= BODY_KEEP ? p->need : take;
    if (p->pool != NULL)
        adieu_buf_pool_take(p->pool, &p->body);
    uint8_t *dst = adieu_buf_reserve(&p->body, want);
    if (dst == NULL) {
        return ADIEU_ENOMEM;
    }
    memcpy(dst, in, take);
    adieu_buf_commit(&p->body, take);
    p->need -= take;
    *taken = take;
    return 0;
}

/* Called at the start of each parse: a body buffer that still holds bytes while the parser
 * waits for a prefix holds the message delivered by the previous call, which is no longer
 * valid now. */
static void release_body(adieu_frame_parser_t *p)
{
    adieu_buf_reset(&p->body);
    adieu_buf_shrink(&p->body, BODY_KEEP);
}

void adieu_frame_parser_trim(adieu_frame_parser_t *p)
{
    assert(p != NULL);
    if (p->state == ADIEU__FRAME_PAYLOAD || p->body.data == NULL)
        return;
    adieu_buf_reset(&p->body);
    if (p->pool != NULL)
        adieu_buf_pool_give(p->pool, &p->body);
    else
        adieu_buf_free(&p->body);
}

static int fail(adieu_frame_parser_t *p, int err)
{
    p->state = ADIEU__FRAME_FAILED;
    adieu_buf_free(&p->body);
    return err;
}

int adieu_frame_parse(adieu_frame_parser_t *p, const uint8_t *data, size_t len, size_t *consumed,
                      adieu_frame_msg_t *msg)
{
    /* Stands in for a NULL input of length 0, so that data + pos below is always defined. */
    static const uint8_t no_input[1];

    assert(p != NULL && consumed != NULL && msg != NULL);
    assert(data != NULL || len == 0);
    assert(p->prefix_bytes == 2 || p->prefix_bytes == 4);
    if (data == NULL) {
        data = no_input;
    }
    *consumed = 0;
    if (p->state == ADIEU__FRAME_PREFIX && adieu_buf_size(&p->body) > 0) {
        release_body(p);
    }
    size_t pos = 0;
    for (;;) {
        switch (p->state) {
        case ADIEU__FRAME_PREFIX:
            /* The usual case, a whole prefix in the input and none of it gathered before, is
             * decoded where it lies; the bytes consumed are the same either way. */
            if (p->need == p->prefix_bytes && len - pos >= p->prefix_bytes) {
                p->len = decode_prefix(data + pos, p->prefix_bytes);
                pos += p->prefix_bytes;
                *consumed = pos;
            } else {
                pos += gather_prefix(p, data + pos, len - pos);
                *consumed = pos;
                if (p->need > 0) {
                    return 0;
                }
                p->len = decode_prefix(p->prefix, p->prefix_bytes);
            }
            /* The limit is checked on the declared length, before any byte of the payload is
             * buffered or any storage reserved for it. */
            if (p->len > p->max_message) {
                return fail(p, ADIEU_ETOOBIG);
            }
            p->state = ADIEU__FRAME_PAYLOAD;
            p->need = p->len;
            break;
        case ADIEU__FRAME_PAYLOAD: {
            /* Nothing gathered yet and the whole payload at hand: hand it out in place. This
             * is also how a zero-length message is delivered, in the call that completed its
             * prefix. */
            if (p->need == p->len && len - pos >= p->need) {
                msg->data = data + pos;
                msg->len = p->len;
                *consumed = pos + p->len;
                start_prefix(p);
                return 1;
            }
            if (pos == len) {
                return 0;
            }
            size_t taken = 0;
            int rc = assemble(p, data + pos, len - pos, &taken);
            if (rc < 0) {
                return fail(p, rc);
            }
            pos += taken;
            *consumed = pos;
            if (p->need > 0) {
                return 0;
            }
            /* NOTE: the message must stay valid until the next call, so only that call can
             * release the body (and free storage over BODY_KEEP). A caller that stops after a
             * 1 instead of calling again with the rest, even an empty rest, keeps the storage
             * until its next read. */
            msg->data = adieu_buf_head(&p->body);
            msg->len = p->len;
            start_prefix(p);
            return 1;
        }
        case ADIEU__FRAME_FAILED:
        default:
            return ADIEU_EINVALID_STATE;
        }
    }
}

bool adieu_frame_parser_idle(const adieu_frame_parser_t *p)
{
    assert(p != NULL);
    return p->state == ADIEU__FRAME_PREFIX && p->need == p->prefix_bytes;
}

int adieu_frame_parser_eof(const adieu_frame_parser_t *p)
{
    assert(p != NULL);
    /* A failed parser is not inside a message any more: like adieu_frame_parse() after a
     * failure, this is a call in the wrong state, not a truncation. */
    if (p->state == ADIEU__FRAME_FAILED) {
        return ADIEU_EINVALID_STATE;
    }
    return adieu_frame_parser_idle(p) ? 0 : ADIEU_ETRUNCATED;
}

int adieu_frame_prefix(uint8_t out[4], unsigned prefix_bytes, size_t len)
{
    assert(out != NULL);
    assert(prefix_bytes == 2 || prefix_bytes == 4);
    uint64_t ceiling = prefix_bytes == 2 ? UINT16_MAX : UINT32_MAX;
    if ((uint64_t)len > ceiling) {
        return ADIEU_ETOOBIG;
    }
    for (unsigned i = 0; i < prefix_bytes; i++) {
        out[i] = (uint8_t)(len >> (8 * (prefix_bytes - 1 - i)));
    }
    return (int)prefix_bytes;
}
