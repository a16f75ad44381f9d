/* SPDX-License-Identifier: MIT */
/*
 * An incremental UTF-8 validator (RFC 3629; Unicode Table 3-7 "Well-Formed UTF-8 Byte
 * Sequences"), sans-I/O. It accepts exactly the shortest encodings of U+0000..U+10FFFF minus
 * the surrogates U+D800..U+DFFF, and fails at the first byte that no valid text could
 * continue with: an overlong lead (C0, C1, E0 80.., F0 80..), a surrogate (ED A0..), a code
 * point over U+10FFFF (F4 90.., F5..FF), a stray or missing continuation byte. Input may come
 * in any number of pieces (WebSocket fragments, TCP reads): a sequence split across pieces is
 * carried over, and adieu_utf8_complete() says at the end of a message whether one is still
 * open (a truncated sequence).
 */
#ifndef ADIEU_PROTO_UTF8_H
#define ADIEU_PROTO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* The automaton's state. 0 is "between characters", so a zeroed validator is a freshly
     * initialised one. */
    uint32_t state;
} adieu_utf8_t;

/* Starts validating a new text. Never fails, never allocates. */
void adieu_utf8_init(adieu_utf8_t *v);

/* Feeds n more bytes at p (p may be NULL when n is 0). Returns 0 when every byte so far can
 * still be part of valid UTF-8, or ADIEU_EUTF8 as soon as one cannot: the bytes after the bad
 * one are not examined. A failed validator stays failed: every later feed returns
 * ADIEU_EUTF8 until adieu_utf8_init(). */
int adieu_utf8_feed(adieu_utf8_t *v, const uint8_t *p, size_t n);

/* True when the bytes fed so far end between characters: no sequence is left open and none
 * was invalid. Call it at the end of a message. */
bool adieu_utf8_complete(const adieu_utf8_t *v);

/* One shot: true when the n bytes at p are complete, valid UTF-8. */
bool adieu_utf8_valid(const uint8_t *p, size_t n);

#endif /* ADIEU_PROTO_UTF8_H */
