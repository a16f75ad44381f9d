/* SPDX-License-Identifier: MIT */
/*
 * The framed protocol codec (SPEC P1), sans-I/O: a big-endian length prefix of 2 or 4 bytes,
 * then that many payload bytes; zero length is a valid empty message. Fed bytes in any
 * split, it yields the same messages. No libuv, no sockets, no clock, no logging here.
 */
#ifndef ADIEU_PROTO_FRAME_H
#define ADIEU_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef enum {
    ADIEU__FRAME_PREFIX = 0, /* waiting for the rest of the length prefix (need bytes) */
    ADIEU__FRAME_PAYLOAD,    /* waiting for the rest of a payload (need bytes) */
    ADIEU__FRAME_FAILED      /* a limit was broken: all input is refused */
} adieu_frame_state_t;

typedef struct {
    adieu_frame_state_t state;
    unsigned prefix_bytes; /* 2 or 4 */
    size_t max_message;    /* already capped at 65535 for 2-byte prefixes */
    size_t need;           /* bytes still required to finish the current state */
    size_t len;            /* declared payload length of the current message */
    uint8_t prefix[4];     /* prefix bytes gathered so far */
    adieu_buf_t body;      /* a payload split across inputs is assembled here */
    /* Optional, NULL after init: where the body's storage comes from when a payload must be
     * assembled and goes back to on adieu_frame_parser_trim(), so that many parsers can
     * hold none between messages and still not allocate per message. */
    adieu_buf_pool_t *pool;
} adieu_frame_parser_t;

typedef struct {
    const uint8_t *data; /* into the caller's input or the parser's body buffer; valid until
                            the next call on the parser */
    size_t len;
} adieu_frame_msg_t;

/* Initialises p. prefix_bytes is 2 or 4; max_message is capped at 65535 with 2. Never
 * allocates, cannot fail (invalid prefix_bytes is a programmer error: asserted). */
void adieu_frame_parser_init(adieu_frame_parser_t *p, unsigned prefix_bytes, size_t max_message);
/* Frees the assembly buffer. */
void adieu_frame_parser_free(adieu_frame_parser_t *p);

/* Feeds len bytes at data. Sets *consumed to the bytes used (always <= len) and returns:
 *   1  one message in *msg (call again with the rest of the input);
 *   0  every byte was consumed and more are needed;
 *   ADIEU_ETOOBIG  a declared length is over max_message (the parser is FAILED from then on);
 *   ADIEU_ENOMEM   the assembly buffer could not grow (the parser is FAILED);
 *   ADIEU_EINVALID_STATE  called after a failure.
 * The limit is checked on the declared length, before anything is buffered. */
int adieu_frame_parse(adieu_frame_parser_t *p, const uint8_t *data, size_t len, size_t *consumed,
                      adieu_frame_msg_t *msg);

/* Gives the body buffer's storage back (to p->pool, or frees it without one) when no payload
 * is being assembled (the parser waits for a length prefix, or failed). Call it once a read
 * was fed in full and its messages handled: it ends the validity of the last message's
 * data. An idle connection then holds no heap memory; one that stops inside a split payload
 * keeps what it gathered. */
void adieu_frame_parser_trim(adieu_frame_parser_t *p);

/* True when the parser stands between messages (nothing partial is buffered). */
bool adieu_frame_parser_idle(const adieu_frame_parser_t *p);

/* Called at end of stream: 0 if between messages, ADIEU_ETRUNCATED if inside a prefix or a
 * payload. */
int adieu_frame_parser_eof(const adieu_frame_parser_t *p);

/* Writes the length prefix for a payload of len bytes into out. Returns the prefix size (2
 * or 4), or ADIEU_ETOOBIG when len does not fit in prefix_bytes. */
int adieu_frame_prefix(uint8_t out[4], unsigned prefix_bytes, size_t len);

#endif /* ADIEU_PROTO_FRAME_H */
