/* SPDX-License-Identifier: MIT */
/*
 * The UTF-8 validator of proto/utf8.h: a table-driven automaton over byte classes, with an
 * ASCII fast path.
 *
 * Unicode Table 3-7 lists every well-formed sequence; only the second byte of a sequence has
 * a narrower range than 80..BF, and only after E0, ED, F0 and F4. Twelve byte classes are
 * enough to tell those ranges apart, and nine states to remember what the next byte may be.
 * Because the narrowed ranges are checked on the second byte itself, an overlong form, a
 * surrogate or a code point over U+10FFFF is refused at the first byte that makes it so, not
 * at the end of its sequence (RFC 6455 §8.1 and the "fail fast" rule of SPEC P2).
 */
#include "proto/utf8.h"

#include <assert.h>
#include <string.h>

#include "adieu/errors.h"

/* Byte classes. */
enum {
    C_ASCII = 0, /* 00..7F */
    C_CONT_LO,   /* 80..8F: a continuation, also the only second byte allowed after F4 */
    C_CONT_MID,  /* 90..9F: a continuation, allowed after ED (not A0..BF: surrogates) */
    C_CONT_HI,   /* A0..BF: a continuation, the only second byte allowed after E0 */
    C_INVALID,   /* C0, C1 (always overlong), F5..FF (over U+10FFFF or not UTF-8 at all) */
    C_LEAD2,     /* C2..DF */
    C_E0,        /* E0: needs A0..BF next (80..9F would be overlong) */
    C_LEAD3,     /* E1..EC, EE, EF */
    C_ED,        /* ED: needs 80..9F next (A0..BF would be a surrogate) */
    C_F0,        /* F0: needs 90..BF next (80..8F would be overlong) */
    C_LEAD4,     /* F1..F3 */
    C_F4,        /* F4: needs 80..8F next (90..BF would be over U+10FFFF) */
    C_COUNT
};

/* States, stored premultiplied by C_COUNT so that a transition is one table lookup. */
enum {
    S_ACCEPT = 0,          /* between characters */
    S_NEED1 = 1 * C_COUNT, /* one more continuation byte, any 80..BF */
    S_NEED2 = 2 * C_COUNT, /* two more, any */
    S_NEED3 = 3 * C_COUNT, /* three more, any */
    S_AFTER_E0 = 4 * C_COUNT,
    S_AFTER_ED = 5 * C_COUNT,
    S_AFTER_F0 = 6 * C_COUNT,
    S_AFTER_F4 = 7 * C_COUNT,
    S_REJECT = 8 * C_COUNT /* an impossible byte was seen: terminal */
};

/* clang-format off */
static const uint8_t byte_class[256] = {
    /* 00..0F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 10..1F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 20..2F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 30..3F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 40..4F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 50..5F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 60..6F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 70..7F */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 80..8F */  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
    /* 90..9F */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* A0..AF */  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,
    /* B0..BF */  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,
    /* C0..CF */  4,  4,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,
    /* D0..DF */  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,
    /* E0..EF */  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  7,
    /* F0..FF */  9, 10, 10, 10, 11,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
};

#define A S_ACCEPT
#define N1 S_NEED1
#define N2 S_NEED2
#define N3 S_NEED3
#define XE0 S_AFTER_E0
#define XED S_AFTER_ED
#define XF0 S_AFTER_F0
#define XF4 S_AFTER_F4
#define R S_REJECT
static const uint8_t transition[9 * C_COUNT] = {
    /*             ASCII 80-8F 90-9F A0-BF bad C2-DF E0   E1-EF ED   F0   F1-F3 F4 */
    /* ACCEPT */   A,    R,    R,    R,    R,  N1,   XE0, N2,   XED, XF0, N3,   XF4,
    /* NEED1 */    R,    A,    A,    A,    R,  R,    R,   R,    R,   R,   R,    R,
    /* NEED2 */    R,    N1,   N1,   N1,   R,  R,    R,   R,    R,   R,   R,    R,
    /* NEED3 */    R,    N2,   N2,   N2,   R,  R,    R,   R,    R,   R,   R,    R,
    /* AFTER_E0 */ R,    R,    R,    N1,   R,  R,    R,   R,    R,   R,   R,    R,
    /* AFTER_ED */ R,    N1,   N1,   R,    R,  R,    R,   R,    R,   R,   R,    R,
    /* AFTER_F0 */ R,    R,    N2,   N2,   R,  R,    R,   R,    R,   R,   R,    R,
    /* AFTER_F4 */ R,    N2,   R,    R,    R,  R,    R,   R,    R,   R,   R,    R,
    /* REJECT */   R,    R,    R,    R,    R,  R,    R,   R,    R,   R,   R,    R,
};
#undef A
#undef N1
#undef N2
#undef N3
#undef XE0
#undef XED
#undef XF0
#undef XF4
#undef R
/* clang-format on */

#define HIGH_BITS UINT64_C(0x8080808080808080)

/* Returns the index of the first byte at or after i that is not ASCII, or n. Reads 16, then
 * 8, bytes at a time while it can; memcpy keeps the loads free of alignment and aliasing
 * concerns and compiles to plain loads. Never reads at or past p + n. */
static size_t skip_ascii(const uint8_t *p, size_t i, size_t n)
{
    while (n - i >= 16) {
        uint64_t a;
        uint64_t b;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 8, 8);
        if ((a | b) & HIGH_BITS) {
            break;
        }
        i += 16;
    }
    if (n - i >= 8) {
        uint64_t a;
        memcpy(&a, p + i, 8);
        if ((a & HIGH_BITS) == 0) {
            i += 8;
        }
    }
    while (i < n && p[i] < 0x80) {
        i++;
    }
    return i;
}

void adieu_utf8_init(adieu_utf8_t *v)
{
    assert(v != NULL);
    v->state = S_ACCEPT;
}

int adieu_utf8_feed(adieu_utf8_t *v, const uint8_t *p, size_t n)
{
    assert(v != NULL);
    assert(p != NULL || n == 0);
    assert(v->state <= S_REJECT && v->state % C_COUNT == 0);
    uint32_t s = v->state;
    if (s == S_REJECT) {
        return ADIEU_EUTF8;
    }
    size_t i = 0;
    while (i < n) {
        if (s == S_ACCEPT) {
            i = skip_ascii(p, i, n);
            if (i == n) {
                break;
            }
        }
        s = transition[s + byte_class[p[i]]];
        i++;
        if (s == S_REJECT) {
            v->state = S_REJECT;
            return ADIEU_EUTF8;
        }
    }
    v->state = s;
    return 0;
}

bool adieu_utf8_complete(const adieu_utf8_t *v)
{
    assert(v != NULL);
    return v->state == S_ACCEPT;
}

bool adieu_utf8_valid(const uint8_t *p, size_t n)
{
    adieu_utf8_t v;
    adieu_utf8_init(&v);
    return adieu_utf8_feed(&v, p, n) == 0 && adieu_utf8_complete(&v);
}
