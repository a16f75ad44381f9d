/* SPDX-License-Identifier: MIT */
/*
 * The UTF-8 validator of proto/utf8.h: a table-driven automaton, one table load per byte, with
 * an ASCII fast path.
 *
 * Unicode Table 3-7 lists every well-formed sequence; only the second byte of a sequence has
 * a narrower range than 80..BF, and only after E0, ED, F0 and F4. Twelve classes of bytes are
 * enough to tell those ranges apart, and nine states to remember what the next byte may be.
 * Because the narrowed ranges are checked on the second byte itself, an overlong form, a
 * surrogate or a code point over U+10FFFF is refused at the first byte that makes it so, not
 * at the end of its sequence (RFC 6455 §8.1 and the "fail fast" rule of SPEC P2).
 */
#include "proto/utf8.h"

#include <assert.h>
#include <string.h>

#include "adieu/errors.h"

/* The automaton's states. Each is stored as a bit offset, a multiple of 6 (the shift-based
 * layout below), and the offset of ACCEPT is 0, so a zeroed validator is between characters. */
enum {
    S_ACCEPT = 0,    /* between characters */
    S_NEED1 = 6,     /* one more continuation byte, any 80..BF */
    S_NEED2 = 12,    /* two more, any */
    S_NEED3 = 18,    /* three more, any */
    S_AFTER_E0 = 24, /* after E0: needs A0..BF (80..9F would be overlong) */
    S_AFTER_ED = 30, /* after ED: needs 80..9F (A0..BF would be a surrogate) */
    S_AFTER_F0 = 36, /* after F0: needs 90..BF (80..8F would be overlong) */
    S_AFTER_F4 = 42, /* after F4: needs 80..8F (90..BF would be over U+10FFFF) */
    S_REJECT = 48,   /* an impossible byte was seen: terminal */
    STATE_MASK = 63  /* the 6 bits of one state */
};

/* The transitions, one 64-bit row per byte value. A row holds, for every state s, the state
 * that byte leads to from s, in the 6 bits at offset s: the next state is
 * (row[byte] >> s) & 63. The row load depends only on the byte, not on the state, so the
 * chain from one byte's state to the next is a shift and a mask instead of two dependent
 * table loads (class, then transition), which is what bounds the speed on non-ASCII text.
 *
 * ROW(a, n1, n2, n3, e0, ed, f0, f4) builds a row from the next state out of ACCEPT, NEED1,
 * NEED2, NEED3, AFTER_E0, AFTER_ED, AFTER_F0 and AFTER_F4; out of REJECT every byte stays in
 * REJECT. The rows are read off Unicode Table 3-7, one per class of bytes that the table
 * treats alike. */
#define ROW(a, n1, n2, n3, e0, ed, f0, f4)                                                         \
    ((uint64_t)(a) << S_ACCEPT | (uint64_t)(n1) << S_NEED1 | (uint64_t)(n2) << S_NEED2 |           \
     (uint64_t)(n3) << S_NEED3 | (uint64_t)(e0) << S_AFTER_E0 | (uint64_t)(ed) << S_AFTER_ED |     \
     (uint64_t)(f0) << S_AFTER_F0 | (uint64_t)(f4) << S_AFTER_F4 | (uint64_t)S_REJECT << S_REJECT)

#define A S_ACCEPT
#define N1 S_NEED1
#define N2 S_NEED2
#define N3 S_NEED3
#define R S_REJECT
/* 00..7F: a character by itself, only between characters. */
#define R_ASCII ROW(A, R, R, R, R, R, R, R)
/* 80..8F: a continuation; the only second byte allowed after F4, refused after E0 and F0. */
#define R_CONT_LO ROW(R, A, N1, N2, R, N1, R, N2)
/* 90..9F: a continuation; allowed after ED and F0, refused after E0 and F4. */
#define R_CONT_MID ROW(R, A, N1, N2, R, N1, N2, R)
/* A0..BF: a continuation; allowed after E0 and F0, refused after ED and F4. */
#define R_CONT_HI ROW(R, A, N1, N2, N1, R, N2, R)
/* C0, C1 (always overlong), F5..FF (over U+10FFFF or not UTF-8 at all). */
#define R_INVALID ROW(R, R, R, R, R, R, R, R)
/* C2..DF, E1..EC and EE..EF, F1..F3: leads of 2, 3 and 4 bytes with no narrowed range. */
#define R_LEAD2 ROW(N1, R, R, R, R, R, R, R)
#define R_LEAD3 ROW(N2, R, R, R, R, R, R, R)
#define R_LEAD4 ROW(N3, R, R, R, R, R, R, R)
/* E0, ED, F0, F4: the leads whose second byte has a narrowed range. */
#define R_E0 ROW(S_AFTER_E0, R, R, R, R, R, R, R)
#define R_ED ROW(S_AFTER_ED, R, R, R, R, R, R, R)
#define R_F0 ROW(S_AFTER_F0, R, R, R, R, R, R, R)
#define R_F4 ROW(S_AFTER_F4, R, R, R, R, R, R, R)

#define X2(r) r, r
#define X4(r) X2(r), X2(r)
#define X16(r) X4(r), X4(r), X4(r), X4(r)

/* NOTE: sized by its initialisers, and the size asserted below: a missing entry would
 * otherwise be a zero row, which leads every state to ACCEPT. */
/* clang-format off */
static const uint64_t transition[] = {
    X16(R_ASCII), X16(R_ASCII), X16(R_ASCII), X16(R_ASCII),           /* 00..3F */
    X16(R_ASCII), X16(R_ASCII), X16(R_ASCII), X16(R_ASCII),           /* 40..7F */
    X16(R_CONT_LO),                                                   /* 80..8F */
    X16(R_CONT_MID),                                                  /* 90..9F */
    X16(R_CONT_HI), X16(R_CONT_HI),                                   /* A0..BF */
    X2(R_INVALID), X2(R_LEAD2), X4(R_LEAD2), X4(R_LEAD2),             /* C0..CB */
    X4(R_LEAD2), X16(R_LEAD2),                                        /* CC..DF */
    R_E0, R_LEAD3, X4(R_LEAD3), X4(R_LEAD3), X2(R_LEAD3), R_LEAD3,    /* E0..EC */
    R_ED, X2(R_LEAD3),                                                /* ED..EF */
    R_F0, R_LEAD4, X2(R_LEAD4), R_F4,                                 /* F0..F4 */
    R_INVALID, X2(R_INVALID), X4(R_INVALID), X4(R_INVALID),           /* F5..FF */
};
/* clang-format on */
_Static_assert(sizeof(transition) / sizeof(transition[0]) == 256, "one row per byte value");

#undef X16
#undef X4
#undef X2
#undef R_F4
#undef R_F0
#undef R_ED
#undef R_E0
#undef R_LEAD4
#undef R_LEAD3
#undef R_LEAD2
#undef R_INVALID
#undef R_CONT_HI
#undef R_CONT_MID
#undef R_CONT_LO
#undef R_ASCII
#undef R
#undef N3
#undef N2
#undef N1
#undef A
#undef ROW

#define HIGH_BITS UINT64_C(0x8080808080808080)

/* The index, within the 8 bytes at p, of the first one that is not ASCII, given the word
 * they make with HIGH_BITS applied (high != 0: there is one). Each byte's high bit stands
 * for itself alone, so with GCC or Clang on a little-endian machine, where the first byte in
 * memory is the least significant, the lowest set bit says which; elsewhere the bytes are
 * looked at one by one. */
static size_t first_high(const uint8_t *p, uint64_t high)
{
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)p;
    return (unsigned)__builtin_ctzll(high) >> 3;
#else
    (void)high;
    size_t k = 0;
    while (p[k] < 0x80) {
        k++;
    }
    return k;
#endif
}

/* Returns the index of the first byte at or after i that is not ASCII, or n. Reads 16, then
 * 8, bytes at a time while it can, and goes straight to the non-ASCII byte of the word that
 * holds one; memcpy keeps the loads free of alignment and aliasing concerns and compiles to
 * plain loads. Never reads at or past p + n. */
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
    /* NOTE: after the loop above stopped at a word pair holding a non-ASCII byte, the first
     * word below, or else the second, finds it: the loop stays as tight as it can be. */
    for (int k = 0; k < 2 && n - i >= 8; k++) {
        uint64_t a;
        memcpy(&a, p + i, 8);
        if (a & HIGH_BITS) {
            return i + first_high(p + i, a & HIGH_BITS);
        }
        i += 8;
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
    assert(v->state <= S_REJECT && v->state % 6 == 0);
    uint64_t s = v->state;
    if (s == S_REJECT) {
        return ADIEU_EUTF8;
    }
    size_t i = 0;
    while (i < n) {
        /* Only an ASCII byte between characters can start a run worth skipping: in non-ASCII
         * text the next byte is usually a lead byte, and the word tests would be wasted. */
        if (s == S_ACCEPT && p[i] < 0x80) {
            i = skip_ascii(p, i, n);
            if (i == n) {
                break;
            }
        }
        s = (transition[p[i]] >> s) & STATE_MASK;
        i++;
        if (s == S_REJECT) {
            v->state = S_REJECT;
            return ADIEU_EUTF8;
        }
    }
    v->state = (uint32_t)s;
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
