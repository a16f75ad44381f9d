/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/utf8.c, the incremental UTF-8 validator.
 *
 * Every vector states the index of the first byte that no valid text can continue with (or
 * that there is none, and whether the text ends between characters). Each is fed whole, one
 * byte at a time, and split in two at every offset, always from memory flush against a guard
 * page; fed one byte at a time the validator must fail exactly at the stated byte: not later
 * (fail fast, RFC 6455 §8.1) and not earlier.
 *
 * The vectors themselves are checked against ref_scan(), an independent reference written a
 * different way: it decodes code points arithmetically (RFC 3629 §3) and decides at each byte
 * whether any completion could still give a valid scalar value, by interval arithmetic on the
 * code point bits seen so far. The validator and the reference are then compared on every
 * string of up to three bytes and on hundreds of thousands of random and mutated inputs.
 *
 * Scenarios are named utf8_<case>.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/utf8.h"

#include "check.h"

/* splitmix64: a small, seedable generator, so every random run can be replayed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------------------------------
 * The reference
 * ------------------------------------------------------------------------------------- */

/* Whether some code point in [lo, hi] is a valid scalar value that needs exactly len bytes
 * (RFC 3629 §3: the shortest form only; no surrogates; nothing over U+10FFFF). */
static bool ref_possible(uint32_t lo, uint32_t hi, unsigned len)
{
    static const uint32_t shortest[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t longest[5] = {0, 0x7f, 0x7ff, 0xffff, 0x10ffff};
    lo = lo > shortest[len] ? lo : shortest[len];
    hi = hi < longest[len] ? hi : longest[len];
    return lo <= hi && !(lo >= 0xd800 && hi <= 0xdfff);
}

/* Returns the index of the first impossible byte of p[0..n), or n when there is none; then
 * *complete says whether the text ends between characters. */
static size_t ref_scan(const uint8_t *p, size_t n, bool *complete)
{
    *complete = false;
    size_t i = 0;
    while (i < n) {
        unsigned b = p[i];
        unsigned len;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b >> 5) == 0x6) {
            len = 2;
            cp = b & 0x1f;
        } else if ((b >> 4) == 0xe) {
            len = 3;
            cp = b & 0x0f;
        } else if ((b >> 3) == 0x1e) {
            len = 4;
            cp = b & 0x07;
        } else {
            return i; /* a continuation byte, or F8..FF: never a lead */
        }
        for (unsigned k = 1;; k++) {
            /* After k bytes the remaining ones add 6 low bits each, any value. */
            unsigned rest = 6 * (len - k);
            uint32_t lo = cp << rest;
            if (!ref_possible(lo, lo | ((UINT32_C(1) << rest) - 1), len)) {
                return i + k - 1;
            }
            if (k == len) {
                break;
            }
            if (i + k == n) {
                return n; /* truncated: not complete */
            }
            unsigned c = p[i + k];
            if ((c >> 6) != 0x2) {
                return i + k;
            }
            cp = (cp << 6) | (c & 0x3f);
        }
        i += len;
    }
    *complete = true;
    return n;
}

/* Encodes a code point (any value up to 0x10FFFF, surrogates included on purpose) the way
 * RFC 3629 §3 describes; returns the length. */
static size_t ref_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---------------------------------------------------------------------------------------
 * Feeding
 * ------------------------------------------------------------------------------------- */

/* Feeds p[a..b) from a guarded copy; returns what the validator returned. */
static int feed_guarded(adieu_utf8_t *v, const uint8_t *p, size_t a, size_t b)
{
    uint8_t *g = guard_copy(p + a, b - a);
    int rc = adieu_utf8_feed(v, b > a ? g : NULL, b - a);
    guard_free(g, b - a);
    return rc;
}

/* Checks the validator against the expectation: bad is the first impossible byte (n when
 * none), complete whether a valid text ends between characters. Feeds whole, then one byte
 * at a time, then split at every offset. */
static bool check_bytes(const uint8_t *p, size_t n, size_t bad, bool complete, const char *name)
{
    bool ok = true;
    int want = bad < n ? ADIEU_EUTF8 : 0;
    adieu_utf8_t v;
    adieu_utf8_init(&v);
    ok = CHECK_EQ(feed_guarded(&v, p, 0, n), want) && ok;
    ok = CHECK_EQ(adieu_utf8_complete(&v), bad == n && complete) && ok;
    ok = CHECK_EQ(adieu_utf8_valid(p, n), bad == n && complete) && ok;
    /* One byte at a time: every byte before bad is accepted, bad itself refused. */
    adieu_utf8_init(&v);
    for (size_t i = 0; i < n && i <= bad; i++) {
        ok = CHECK_EQ(feed_guarded(&v, p, i, i + 1), i == bad ? ADIEU_EUTF8 : 0) && ok;
    }
    ok = CHECK_EQ(adieu_utf8_complete(&v), bad == n && complete) && ok;
    for (size_t k = 0; k <= n; k++) {
        adieu_utf8_init(&v);
        int rc = feed_guarded(&v, p, 0, k);
        ok = CHECK_EQ(rc, bad < k ? ADIEU_EUTF8 : 0) && ok;
        if (rc == 0) {
            rc = feed_guarded(&v, p, k, n);
        }
        ok = CHECK_EQ(rc, want) && CHECK_EQ(adieu_utf8_complete(&v), bad == n && complete) && ok;
    }
    if (!ok) {
        fprintf(stderr, "  vector: %s\n", name);
    }
    return ok;
}

typedef struct {
    const char *name;
    const char *bytes;
    size_t n;
    long bad;      /* index of the first impossible byte, -1 when none */
    bool complete; /* when bad is -1: ends between characters */
} vector_t;

#define VALID(name, s)                                                                             \
    {                                                                                              \
        name, s, sizeof(s) - 1, -1, true                                                           \
    }
#define TRUNCATED(name, s)                                                                         \
    {                                                                                              \
        name, s, sizeof(s) - 1, -1, false                                                          \
    }
#define INVALID(name, s, at)                                                                       \
    {                                                                                              \
        name, s, sizeof(s) - 1, at, false                                                          \
    }

/* Runs each vector through the reference (which must agree, or the vector or the reference
 * is wrong) and the validator. */
static void run_vectors(const vector_t *vs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = (const uint8_t *)vs[i].bytes;
        size_t n = vs[i].n;
        size_t bad = vs[i].bad < 0 ? n : (size_t)vs[i].bad;
        bool complete;
        size_t ref = ref_scan(p, n, &complete);
        if (!CHECK_EQ(ref, bad) || !CHECK_EQ(bad == n && complete, bad == n && vs[i].complete)) {
            fprintf(stderr, "  reference disagrees on %s\n", vs[i].name);
        }
        check_bytes(p, n, bad, vs[i].complete, vs[i].name);
    }
}

#define RUN_VECTORS(vs) run_vectors(vs, sizeof(vs) / sizeof(vs[0]))

/* ---------------------------------------------------------------------------------------
 * Vectors
 * ------------------------------------------------------------------------------------- */

static void utf8_valid_text(void)
{
    static const vector_t vs[] = {
        VALID("empty", ""),
        VALID("ascii", "Hello, world"),
        VALID("nul and del", "a\x00z\x7f"),
        /* Markus Kuhn's UTF-8 test file, 1: the Greek word "kosme". */
        VALID("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
        VALID("mixed", "a\xc3\xa9"
                       "b\xe2\x82\xac"
                       "c\xf0\x9f\x98\x80"
                       "d"),
        /* U+FFFE and U+FFFF are noncharacters, but well-formed UTF-8. */
        VALID("noncharacters", "\xef\xbf\xbe\xef\xbf\xbf"),
        VALID("replacement character", "\xef\xbf\xbd"),
    };
    RUN_VECTORS(vs);
}

/* Kuhn 2.1 and 2.2: the first and last code point of each sequence length. */
static void utf8_boundaries(void)
{
    static const vector_t vs[] = {
        VALID("first 1-byte U+0000", "\x00"),
        VALID("first 2-byte U+0080", "\xc2\x80"),
        VALID("first 3-byte U+0800", "\xe0\xa0\x80"),
        VALID("first 4-byte U+10000", "\xf0\x90\x80\x80"),
        VALID("last 1-byte U+007F", "\x7f"),
        VALID("last 2-byte U+07FF", "\xdf\xbf"),
        VALID("last 3-byte U+FFFF", "\xef\xbf\xbf"),
        VALID("last code point U+10FFFF", "\xf4\x8f\xbf\xbf"),
        /* Kuhn 2.3: other boundaries. */
        VALID("U+D7FF before the surrogates", "\xed\x9f\xbf"),
        VALID("U+E000 after the surrogates", "\xee\x80\x80"),
        VALID("U+FFFD", "\xef\xbf\xbd"),
        VALID("U+1FFFF", "\xf0\x9f\xbf\xbf"),
        VALID("U+100000", "\xf4\x80\x80\x80"),
    };
    RUN_VECTORS(vs);
}

/* Kuhn 4: overlong forms, refused at the first byte that makes them overlong. */
static void utf8_overlong(void)
{
    static const vector_t vs[] = {
        INVALID("overlong '/' in 2 bytes", "\xc0\xaf", 0),
        INVALID("overlong '/' in 3 bytes", "\xe0\x80\xaf", 1),
        INVALID("overlong '/' in 4 bytes", "\xf0\x80\x80\xaf", 1),
        INVALID("overlong '/' in 5 bytes", "\xf8\x80\x80\x80\xaf", 0),
        INVALID("overlong '/' in 6 bytes", "\xfc\x80\x80\x80\x80\xaf", 0),
        INVALID("largest overlong 2-byte", "\xc1\xbf", 0),
        INVALID("largest overlong 3-byte", "\xe0\x9f\xbf", 1),
        INVALID("largest overlong 4-byte", "\xf0\x8f\xbf\xbf", 1),
        INVALID("overlong NUL in 2 bytes", "\xc0\x80", 0),
        INVALID("overlong NUL in 3 bytes", "\xe0\x80\x80", 1),
        INVALID("overlong NUL in 4 bytes", "\xf0\x80\x80\x80", 1),
        INVALID("overlong after text", "ab\xc0\x80", 2),
    };
    RUN_VECTORS(vs);
}

/* Kuhn 5: UTF-16 surrogates, single and paired, are not scalar values. */
static void utf8_surrogates(void)
{
    static const vector_t vs[] = {
        INVALID("U+D800", "\xed\xa0\x80", 1),
        INVALID("U+DB7F", "\xed\xad\xbf", 1),
        INVALID("U+DB80", "\xed\xae\x80", 1),
        INVALID("U+DBFF", "\xed\xaf\xbf", 1),
        INVALID("U+DC00", "\xed\xb0\x80", 1),
        INVALID("U+DF80", "\xed\xbe\x80", 1),
        INVALID("U+DFFF", "\xed\xbf\xbf", 1),
        INVALID("paired U+D800 U+DC00", "\xed\xa0\x80\xed\xb0\x80", 1),
        INVALID("surrogate after text", "\xce\xba\xed\xa0\x80", 3),
    };
    RUN_VECTORS(vs);
}

/* Over U+10FFFF, and bytes that never occur in UTF-8 (Kuhn 3.5). */
static void utf8_above_max(void)
{
    static const vector_t vs[] = {
        INVALID("U+110000", "\xf4\x90\x80\x80", 1),
        INVALID("U+13FFFF", "\xf4\xbf\xbf\xbf", 1),
        INVALID("U+140000", "\xf5\x80\x80\x80", 0),
        INVALID("U+1FFFFF", "\xf7\xbf\xbf\xbf", 0),
        INVALID("5-byte lead", "\xf8\x88\x80\x80\x80", 0),
        INVALID("6-byte lead", "\xfc\x84\x80\x80\x80\x80", 0),
        INVALID("FE", "\xfe", 0),
        INVALID("FF", "\xff", 0),
        INVALID("FE FE FF FF", "\xfe\xfe\xff\xff", 0),
    };
    RUN_VECTORS(vs);
}

/* Kuhn 3.1-3.4: stray continuation bytes, and sequences cut short by another byte. */
static void utf8_bad_continuation(void)
{
    static const vector_t vs[] = {
        INVALID("lone 80", "\x80", 0),
        INVALID("lone BF", "\xbf", 0),
        INVALID("continuation after ASCII", "a\x80", 1),
        INVALID("one continuation too many", "\xc2\x80\x80", 2),
        INVALID("2-byte then space", "\xc2 ", 1),
        INVALID("3-byte then space", "\xe0\xa0 ", 2),
        INVALID("4-byte then space", "\xf0\x90\x80 ", 3),
        INVALID("3-byte then ASCII", "\xe1\x80\x41", 2),
        INVALID("4-byte then ASCII", "\xf1\x80\x80\x41", 3),
        INVALID("lead after lead", "\xc2\xc2\x80", 1),
        INVALID("lone C2 between spaces", " \xc2 ", 2),
    };
    RUN_VECTORS(vs);
}

/* Kuhn 3.3: sequences with the last byte(s) missing at the end of the text: valid so far,
 * never complete. */
static void utf8_truncated(void)
{
    static const vector_t vs[] = {
        TRUNCATED("2-byte missing 1", "\xc2"),
        TRUNCATED("3-byte missing 2", "\xe0"),
        TRUNCATED("3-byte missing 1", "\xe0\xa0"),
        TRUNCATED("ED missing 1", "\xed\x9f"),
        TRUNCATED("4-byte missing 3", "\xf0"),
        TRUNCATED("4-byte missing 2", "\xf0\x90"),
        TRUNCATED("4-byte missing 1", "\xf0\x90\x80"),
        TRUNCATED("U+10FFFF missing 1", "\xf4\x8f\xbf"),
        TRUNCATED("kosme missing its last byte", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"),
    };
    RUN_VECTORS(vs);
}

/* "kosme" split into two fragments at every byte, and into one-byte fragments: the same as
 * whole (run_vectors splits every vector; this one states it for the WebSocket case). */
static void utf8_split_across_fragments(void)
{
    static const uint8_t kosme[] = {0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf,
                                    0x83, 0xce, 0xbc, 0xce, 0xb5};
    CHECK(check_bytes(kosme, sizeof(kosme), sizeof(kosme), true, "kosme"));
    /* A surrogate whose first byte ends one fragment: refused on the next fragment's first
     * byte, before anything after it is read. */
    adieu_utf8_t v;
    adieu_utf8_init(&v);
    CHECK_EQ(feed_guarded(&v, (const uint8_t *)"ok\xed", 0, 3), 0);
    CHECK(!adieu_utf8_complete(&v));
    CHECK_EQ(feed_guarded(&v, (const uint8_t *)"\xa0\x80", 0, 2), ADIEU_EUTF8);
}

/* The fast path reads 8 and 16 bytes at a time: one bad or multi-byte character at every
 * position of long ASCII runs, at every starting alignment, must be seen exactly there. */
static void utf8_fast_path_positions(void)
{
    uint8_t buf[80];
    for (size_t len = 1; len <= sizeof(buf); len += 3) {
        for (size_t at = 0; at < len; at++) {
            memset(buf, 'a', len);
            buf[at] = 0x80;
            check_bytes(buf, len, at, false, "ascii with a stray continuation");
            buf[at] = 0xc3;
            if (at + 1 < len) {
                buf[at + 1] = 0xa9;
                check_bytes(buf, len, len, true, "ascii with an e-acute");
            } else {
                check_bytes(buf, len, len, false, "ascii ending in a lead byte");
            }
        }
        memset(buf, 'a', len);
        check_bytes(buf, len, len, true, "ascii");
    }
}

static void utf8_error_is_sticky(void)
{
    adieu_utf8_t v;
    adieu_utf8_init(&v);
    CHECK_EQ(adieu_utf8_feed(&v, (const uint8_t *)"\xff", 1), ADIEU_EUTF8);
    CHECK_EQ(adieu_utf8_feed(&v, (const uint8_t *)"abc", 3), ADIEU_EUTF8);
    CHECK_EQ(adieu_utf8_feed(&v, NULL, 0), ADIEU_EUTF8);
    CHECK(!adieu_utf8_complete(&v));
    adieu_utf8_init(&v);
    CHECK_EQ(adieu_utf8_feed(&v, (const uint8_t *)"abc", 3), 0);
    CHECK(adieu_utf8_complete(&v));
    /* An empty feed changes nothing, inside a sequence too. */
    CHECK_EQ(adieu_utf8_feed(&v, (const uint8_t *)"\xe2", 1), 0);
    CHECK_EQ(adieu_utf8_feed(&v, NULL, 0), 0);
    CHECK_EQ(adieu_utf8_feed(&v, (const uint8_t *)"\x82\xac", 2), 0);
    CHECK(adieu_utf8_complete(&v));
    /* A zeroed validator is a fresh one. */
    adieu_utf8_t z;
    memset(&z, 0, sizeof(z));
    CHECK(adieu_utf8_complete(&z));
    CHECK_EQ(adieu_utf8_feed(&z, (const uint8_t *)"\xce\xba", 2), 0);
}

/* ---------------------------------------------------------------------------------------
 * Differential checks against the reference
 * ------------------------------------------------------------------------------------- */

/* Compares validator and reference on one input, fed whole and split at cut. Cheaper than
 * check_bytes(): used on many inputs. */
static bool compare(const uint8_t *p, size_t n, size_t cut)
{
    bool complete;
    size_t bad = ref_scan(p, n, &complete);
    bool valid = bad == n && complete;
    adieu_utf8_t v;
    adieu_utf8_init(&v);
    bool ok = CHECK_EQ(adieu_utf8_feed(&v, p, n), bad < n ? ADIEU_EUTF8 : 0);
    ok = CHECK_EQ(adieu_utf8_complete(&v), valid) && ok;
    ok = CHECK_EQ(adieu_utf8_valid(p, n), valid) && ok;
    if (bad < n) {
        /* Exactly at bad: everything before it passes, the byte itself fails. */
        adieu_utf8_init(&v);
        ok = CHECK_EQ(adieu_utf8_feed(&v, p, bad), 0) && ok;
        ok = CHECK_EQ(adieu_utf8_feed(&v, p + bad, 1), ADIEU_EUTF8) && ok;
    }
    cut = cut < n ? cut : n;
    adieu_utf8_init(&v);
    int rc = adieu_utf8_feed(&v, p, cut);
    if (rc == 0) {
        rc = adieu_utf8_feed(&v, p + cut, n - cut);
    }
    ok = CHECK_EQ(rc, bad < n ? ADIEU_EUTF8 : 0) && CHECK_EQ(adieu_utf8_complete(&v), valid) && ok;
    return ok;
}

/* Every string of one, two and three bytes, alone and followed by "zzz" (what comes after a
 * sequence matters: a truncated one must fail on the 'z'), then every 4-byte sequence from a
 * lead F0..F4 with its last byte at the edges of the continuation range. */
static void utf8_differential_exhaustive(void)
{
    uint8_t b[6] = {0, 0, 0, 'z', 'z', 'z'};
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                if (!compare(b, 3, (x + y + z) % 4) || !compare(b, 6, (x + y + z) % 7)) {
                    fprintf(stderr, "  input %02x %02x %02x\n", x, y, z);
                    return;
                }
            }
            if (!compare(b, 2, 1) || !compare(b, 1, 0)) {
                return;
            }
        }
    }
    static const uint8_t last[] = {0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xff};
    uint8_t q[4];
    for (unsigned x = 0xf0; x <= 0xf4; x++) {
        for (unsigned y = 0; y < 256; y++) {
            for (unsigned z = 0; z < 256; z++) {
                for (size_t k = 0; k < sizeof(last); k++) {
                    q[0] = (uint8_t)x;
                    q[1] = (uint8_t)y;
                    q[2] = (uint8_t)z;
                    q[3] = last[k];
                    if (!compare(q, 4, k % 5)) {
                        fprintf(stderr, "  input %02x %02x %02x %02x\n", x, y, z, last[k]);
                        return;
                    }
                }
            }
        }
    }
}

/* A random code point, biased toward the edges of each length and of the surrogates. */
static uint32_t random_code_point(uint64_t *rng)
{
    static const uint32_t edges[] = {0,      0x7f,   0x80,   0x7ff,  0x800,   0xd7ff,  0xd800,
                                     0xdfff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff};
    uint64_t r = next_random(rng);
    switch (r & 7) {
    case 0:
    case 1:
        return (uint32_t)((r >> 8) % 0x80);
    case 2:
        return edges[(r >> 8) % (sizeof(edges) / sizeof(edges[0]))];
    case 3:
        return 0x80 + (uint32_t)((r >> 8) % (0x800 - 0x80));
    case 4:
        return 0x800 + (uint32_t)((r >> 8) % (0x10000 - 0x800));
    default:
        return (uint32_t)((r >> 8) % 0x110000);
    }
}

/* Builds random text of up to max bytes: mostly valid (surrogates are encoded too, so some
 * are not), then damaged in one of several ways. Returns its length. */
static size_t random_text(uint8_t *buf, size_t max, uint64_t *rng)
{
    size_t n = 0;
    size_t target = (size_t)(next_random(rng) % max);
    while (n + 4 <= target) {
        n += ref_encode(random_code_point(rng), buf + n);
    }
    uint64_t r = next_random(rng);
    size_t at = n > 0 ? (size_t)((r >> 8) % n) : 0;
    switch (r & 7) {
    case 0: /* left alone */
        break;
    case 1: /* one bit flipped */
        if (n > 0) {
            buf[at] ^= (uint8_t)(1u << ((r >> 40) & 7));
        }
        break;
    case 2: /* one byte replaced */
        if (n > 0) {
            buf[at] = (uint8_t)(r >> 40);
        }
        break;
    case 3: /* one byte deleted */
        if (n > 0) {
            memmove(buf + at, buf + at + 1, n - at - 1);
            n--;
        }
        break;
    case 4: /* one byte inserted */
        memmove(buf + at + 1, buf + at, n - at);
        buf[at] = (uint8_t)(r >> 40);
        n++;
        break;
    case 5: /* truncated */
        n = at;
        break;
    default: /* random bytes, biased high */
        for (size_t i = 0; i < n; i++) {
            uint64_t s = next_random(rng);
            buf[i] = (uint8_t)((s & 1) ? 0x80 | (s >> 8) : s >> 8);
        }
        break;
    }
    return n;
}

static void utf8_differential_random(void)
{
    uint64_t rng = 6455;
    uint8_t buf[512 + 8];
    for (int i = 0; i < 300000; i++) {
        size_t max = (i & 15) == 0 ? 512 : 40;
        size_t n = random_text(buf, max, &rng);
        if (!compare(buf, n, (size_t)(next_random(&rng) % (n + 1)))) {
            fprintf(stderr, "  random input %d (seed 6455)\n", i);
            return;
        }
    }
}

/* Every single-byte substitution, with every byte value, of text holding sequences of each
 * length: each damaged form, whole and split everywhere, against the reference. */
static void utf8_differential_mutated(void)
{
    static const uint8_t text[] = {'a', 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xed, 0x9f, 0xbf,
                                   'z', 0xf0, 0x9f, 0x98, 0x80, 0xf4, 0x8f, 0xbf, 0xbf};
    uint8_t buf[sizeof(text)];
    for (size_t at = 0; at < sizeof(text); at++) {
        for (unsigned b = 0; b < 256; b++) {
            memcpy(buf, text, sizeof(text));
            buf[at] = (uint8_t)b;
            bool complete;
            size_t bad = ref_scan(buf, sizeof(buf), &complete);
            if (!check_bytes(buf, sizeof(buf), bad, complete, "substitution")) {
                fprintf(stderr, "  byte %zu set to %02x\n", at, b);
                return;
            }
        }
    }
}

int main(void)
{
    CHECK_RUN(utf8_valid_text);
    CHECK_RUN(utf8_boundaries);
    CHECK_RUN(utf8_overlong);
    CHECK_RUN(utf8_surrogates);
    CHECK_RUN(utf8_above_max);
    CHECK_RUN(utf8_bad_continuation);
    CHECK_RUN(utf8_truncated);
    CHECK_RUN(utf8_split_across_fragments);
    CHECK_RUN(utf8_fast_path_positions);
    CHECK_RUN(utf8_error_is_sticky);
    CHECK_RUN(utf8_differential_exhaustive);
    CHECK_RUN(utf8_differential_random);
    CHECK_RUN(utf8_differential_mutated);
    return check_done();
}
