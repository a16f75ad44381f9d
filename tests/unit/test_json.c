/* SPDX-License-Identifier: MIT */
/*
 * Tests of the validating JSON minifier (src/util/json.c, SPEC section 4 "Demo JSON").
 *
 * Three parts:
 *  - hand-written vectors, valid ones with their exact minified form and invalid ones with
 *    the exact error offset and detail. Each runs with its input flush against a guard page
 *    (STYLE 2.7), so a read past the end faults even without sanitizers, and each is also cut
 *    at every length to check the offset rule (see check_prefixes());
 *  - the contract on the output buffer: untouched on error, appended to on success;
 *  - a differential test against jansson on many seeded random documents and mutations of
 *    them. jansson is a converting parser with a few documented limits that a validator which
 *    copies tokens does not have; each is recognised narrowly in jansson_difference().
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "adieu/adieu.h"
#include "util/buf.h"
#include "util/json.h"

#include "check.h"

/* A string literal as (pointer, length), so that vectors may hold NUL bytes. */
#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* ---------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------- */

static void print_escaped(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7F && p[i] != '\\')
            fputc(p[i], stderr);
        else
            fprintf(stderr, "\\x%02X", p[i]);
    }
}

/* The guard area: GUARD_AREA usable bytes followed by one inaccessible page (check.h's
 * guard_copy()). Inputs are copied so that they end exactly where that page begins. One area
 * serves every call, because the prefix checks run the minifier hundreds of thousands of
 * times and a mapping per call would dominate the run time. */
#define GUARD_AREA ((size_t)1 << 20)
static uint8_t *guard_base;

static void guard_init(void)
{
    uint8_t *zeros = calloc(1, GUARD_AREA);
    if (zeros == NULL) {
        perror("calloc");
        abort();
    }
    guard_base = guard_copy(zeros, GUARD_AREA);
    free(zeros);
}

/* Copies n bytes to the end of the guard area and returns where they start. */
static const uint8_t *guard_place(const uint8_t *src, size_t n)
{
    CHECK(n <= GUARD_AREA);
    uint8_t *dst = guard_base + GUARD_AREA - n;
    if (n > 0)
        memmove(dst, src, n);
    return dst;
}

/* Runs the minifier on in[0..len) placed against the guard page. */
static int minify_guarded(const uint8_t *in, size_t len, adieu_buf_t *out, adieu_json_error_t *err)
{
    return adieu_json_minify(guard_place(in, len), len, out, err);
}

/* The offset rule (json.c, "Error offsets"): err->offset is the length of the longest prefix
 * of the input that can still begin a valid JSON text, found in one left-to-right pass. So
 * every prefix no longer than that is accepted or fails exactly at its own end, and every
 * longer prefix fails at the same offset for the same reason. Checking this for every cut
 * of a vector pins down the offsets of truncated input without listing each one, and stands
 * in for the "split at every offset" runs of the incremental parsers. */
static void check_prefixes(const uint8_t *in, size_t len, int full_rc,
                           const adieu_json_error_t *full_err)
{
    size_t k = full_rc == 0 ? len : full_err->offset;
    adieu_buf_t out;
    adieu_buf_init(&out);
    for (size_t j = 0; j < len; j++) {
        adieu_json_error_t e = {0, NULL};
        adieu_buf_reset(&out);
        int rc = minify_guarded(in, j, &out, &e);
        bool ok;
        if (j <= k)
            ok = rc == 0 || (rc == ADIEU_EPROTO && e.offset == j);
        else
            ok = rc == ADIEU_EPROTO && e.offset == k && strcmp(e.detail, full_err->detail) == 0;
        if (!ok) {
            fprintf(stderr, "prefix %zu of \"", j);
            print_escaped(in, len);
            fprintf(stderr, "\": rc %d offset %zu detail %s (whole input: offset %zu)\n", rc,
                    e.offset, rc == ADIEU_EPROTO ? e.detail : "-", k);
        }
        CHECK(ok);
    }
    adieu_buf_free(&out);
}

/* ---------------------------------------------------------------------------------------
 * Hand-written vectors
 * ------------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *in;
    size_t len;
    const uint8_t *want;
    size_t want_len;
} valid_vec_t;

static const valid_vec_t valid_vecs[] = {
    /* Top-level scalars (RFC 8259 §2: any value may be the text). */
    {S("0"), S("0")},
    {S("-0"), S("-0")},
    {S("1E+2"), S("1E+2")},
    {S("1e-2"), S("1e-2")},
    {S("-12.50e010"), S("-12.50e010")},
    {S("0.0"), S("0.0")},
    {S("123456789012345678901234567890"), S("123456789012345678901234567890")},
    {S("-123456789012345678901234567890.000000000000000000001e-99999999999999999999"),
     S("-123456789012345678901234567890.000000000000000000001e-99999999999999999999")},
    {S("1e400"), S("1e400")},
    {S("true"), S("true")},
    {S("false"), S("false")},
    {S("null"), S("null")},
    {S("\"\""), S("\"\"")},
    {S(" \t\r\n 42 \t\r\n "), S("42")},
    {S("\n\"x\"\n"), S("\"x\"")},
    /* Whitespace inside strings is content and stays. */
    {S(" \" a  b \" "), S("\" a  b \"")},
    /* Escapes stay as written: \u00e9 is not decoded, raw é is not escaped. */
    {S("\"\\u00e9\""), S("\"\\u00e9\"")},
    {S("\"\xC3\xA9\""), S("\"\xC3\xA9\"")},
    {S("\"\\u00E9\\u00e9\""), S("\"\\u00E9\\u00e9\"")},
    {S("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), S("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"")},
    {S("\"\\uD83D\\uDE00\""), S("\"\\uD83D\\uDE00\"")},
    {S("\"\\ud83d\\ude00\""), S("\"\\ud83d\\ude00\"")},
    {S("\"\\u0000\""), S("\"\\u0000\"")},
    /* RFC 8259 §7 and §8.2: an escaped lone surrogate is syntactically valid, so it passes
     * (jansson rejects it; see jansson_difference()). */
    {S("\"\\uD800\""), S("\"\\uD800\"")},
    {S("\"\\uDC00\\uD800\""), S("\"\\uDC00\\uD800\"")},
    /* UTF-8 at the edges of each sequence length and around the surrogates. */
    {S("\"\xC2\x80\""), S("\"\xC2\x80\"")},                 /* U+0080 */
    {S("\"\xDF\xBF\""), S("\"\xDF\xBF\"")},                 /* U+07FF */
    {S("\"\xE0\xA0\x80\""), S("\"\xE0\xA0\x80\"")},         /* U+0800 */
    {S("\"\xED\x9F\xBF\""), S("\"\xED\x9F\xBF\"")},         /* U+D7FF */
    {S("\"\xEE\x80\x80\""), S("\"\xEE\x80\x80\"")},         /* U+E000 */
    {S("\"\xEF\xBF\xBF\""), S("\"\xEF\xBF\xBF\"")},         /* U+FFFF */
    {S("\"\xF0\x90\x80\x80\""), S("\"\xF0\x90\x80\x80\"")}, /* U+10000 */
    {S("\"\xF4\x8F\xBF\xBF\""), S("\"\xF4\x8F\xBF\xBF\"")}, /* U+10FFFF */
    {S("\"\x7F\""), S("\"\x7F\"")},                         /* DEL needs no escape */
    /* Long strings, with special bytes beyond the first 8-byte word. */
    {S("\"abcdefghijklmnopqrstuvwxyz0123456789\""), S("\"abcdefghijklmnopqrstuvwxyz0123456789\"")},
    {S("[\"abcdefg\\\"hijklmn\", \"abcdefgh\\\\\"]"),
     S("[\"abcdefg\\\"hijklmn\",\"abcdefgh\\\\\"]")},
    {S("\"1234567\xC3\xA9ghijklm\xE2\x82\xACghijklmn\xF0\x9F\x98\x80\""),
     S("\"1234567\xC3\xA9ghijklm\xE2\x82\xACghijklmn\xF0\x9F\x98\x80\"")},
    /* Containers. */
    {S("{}"), S("{}")},
    {S("[]"), S("[]")},
    {S("{ \t}"), S("{}")},
    {S("[\n]"), S("[]")},
    {S(" [ [ [ ] ] , [ ] ] "), S("[[[]],[]]")},
    {S("[ 1 , { \"k\" : null } , [ ] , \"s\" , true , false , -1.5e3 ]"),
     S("[1,{\"k\":null},[],\"s\",true,false,-1.5e3]")},
    {S("{\n  \"b\": 1,\n  \"a\": [2, 3],\n  \"c\": {\"d\": {}}\n}\n"),
     S("{\"b\":1,\"a\":[2,3],\"c\":{\"d\":{}}}")},
    /* Key order and duplicate keys are kept (RFC 8259 §4 only says names SHOULD be
     * unique). */
    {S("{\"a\": 1, \"a\": 2, \"b\": 3, \"a\": 4}"), S("{\"a\":1,\"a\":2,\"b\":3,\"a\":4}")},
    {S("{\"z\":1,\"y\":2,\"x\":3}"), S("{\"z\":1,\"y\":2,\"x\":3}")},
    {S("{\"\":\"\"}"), S("{\"\":\"\"}")},
    {S("[123456789012345678901234567890, -0, 1E+2]"),
     S("[123456789012345678901234567890,-0,1E+2]")},
};

typedef struct {
    const uint8_t *in;
    size_t len;
    size_t offset;
    const char *detail;
} invalid_vec_t;

static const invalid_vec_t invalid_vecs[] = {
    /* RFC 8259 §2: a value is required. */
    {S(""), 0, "empty input"},
    {S("   "), 3, "empty input"},
    {S(" \t\r\n"), 4, "empty input"},
    /* Numbers, RFC 8259 §6. */
    {S("01"), 1, "leading zero"},
    {S("-01"), 2, "leading zero"},
    {S("00"), 1, "leading zero"},
    {S("[00]"), 2, "leading zero"},
    {S("1."), 2, "invalid number"},
    {S("1.e5"), 2, "invalid number"},
    {S("[1.]"), 3, "invalid number"},
    {S(".5"), 0, "unexpected character"},
    {S("+1"), 0, "unexpected character"},
    {S("-"), 1, "invalid number"},
    {S("-a"), 1, "invalid number"},
    {S("- 1"), 1, "invalid number"},
    {S("1e"), 2, "invalid number"},
    {S("1e+"), 3, "invalid number"},
    {S("1E-x"), 3, "invalid number"},
    {S("1ee5"), 2, "invalid number"},
    {S("0x10"), 1, "trailing data"},
    {S("1 2"), 2, "trailing data"},
    {S("1.5.3"), 3, "trailing data"},
    {S("NaN"), 0, "unexpected character"},
    {S("nan"), 1, "invalid literal"},
    {S("Infinity"), 0, "unexpected character"},
    {S("-Infinity"), 1, "invalid number"},
    {S("[NaN]"), 1, "unexpected character"},
    /* Literals, RFC 8259 §3. */
    {S("tru"), 3, "invalid literal"},
    {S("trux"), 3, "invalid literal"},
    {S("True"), 0, "unexpected character"},
    {S("nul"), 3, "invalid literal"},
    {S("nulL"), 3, "invalid literal"},
    {S("fals"), 4, "invalid literal"},
    {S("falsy"), 4, "invalid literal"},
    {S("nullx"), 4, "trailing data"},
    {S("[truex]"), 5, "expected ',' or ']'"},
    /* Structure, RFC 8259 §4 and §5. */
    {S("[1,]"), 3, "trailing comma"},
    {S("[1, ]"), 4, "trailing comma"},
    {S("{\"a\":1,}"), 7, "trailing comma"},
    {S("[,1]"), 1, "unexpected character"},
    {S("[1,,2]"), 3, "unexpected character"},
    {S("{,}"), 1, "expected string key"},
    {S("{1:2}"), 1, "expected string key"},
    {S("{]"), 1, "expected string key"},
    {S("[}"), 1, "unexpected character"},
    {S("]"), 0, "unexpected character"},
    {S("}"), 0, "unexpected character"},
    {S("[1 2]"), 3, "expected ',' or ']'"},
    {S("[1}"), 2, "expected ',' or ']'"},
    {S("{\"a\":1]"), 6, "expected ',' or '}'"},
    {S("{\"a\" 1}"), 5, "expected ':'"},
    {S("{\"a\"=1}"), 4, "expected ':'"},
    {S("{\"a\":1 \"b\":2}"), 7, "expected ',' or '}'"},
    {S("{\"a\":}"), 5, "unexpected character"},
    {S("{\"a\"}"), 4, "expected ':'"},
    {S("[1]]"), 3, "trailing data"},
    {S("{} {}"), 3, "trailing data"},
    {S("\"a\"x"), 3, "trailing data"},
    {S("\"a\"\"b\""), 3, "trailing data"},
    {S("true false"), 5, "trailing data"},
    {S("1\x00"), 1, "trailing data"},
    /* Single quotes are not JSON. */
    {S("'a'"), 0, "unexpected character"},
    {S("{'a':1}"), 1, "expected string key"},
    {S("['a']"), 1, "unexpected character"},
    /* Input that ends too early: the offset is the length. */
    {S("\"abc"), 4, "unterminated string"},
    {S("[\"a"), 3, "unterminated string"},
    {S("\"\\"), 2, "unterminated string"},
    {S("\"\\u12"), 5, "unterminated string"},
    {S("\"\xE2\x82"), 3, "unterminated string"},
    {S("["), 1, "unterminated array"},
    {S("[1,2"), 4, "unterminated array"},
    {S("[1,2,   "), 8, "unterminated array"},
    {S("[[]"), 3, "unterminated array"},
    {S("{"), 1, "unterminated object"},
    {S("{\"a\""), 4, "unterminated object"},
    {S("{\"a\":"), 5, "unterminated object"},
    {S("{\"a\":1"), 6, "unterminated object"},
    {S("{\"a\":1,"), 7, "unterminated object"},
    {S("[{\"a\":[1"), 8, "unterminated array"},
    /* Raw control characters in strings, RFC 8259 §7. */
    {S("\"a\x01z\""), 2, "control character in string"},
    {S("\"\t\""), 1, "control character in string"},
    {S("\"\n\""), 1, "control character in string"},
    {S("\"\r\""), 1, "control character in string"},
    {S("\"\x00\""), 1, "control character in string"},
    {S("\"\x1F\""), 1, "control character in string"},
    {S("\"abcdefghijk\x1F\""), 12, "control character in string"},
    /* Escapes, RFC 8259 §7. */
    {S("\"\\x\""), 2, "invalid escape"},
    {S("\"\\U0041\""), 2, "invalid escape"},
    {S("\"\\u00G0\""), 5, "invalid escape"},
    {S("\"\\u12\""), 5, "invalid escape"},
    {S("\"\\'\""), 2, "invalid escape"},
    {S("\"\\a\""), 2, "invalid escape"},
    {S("\"\\0\""), 2, "invalid escape"},
    {S("\"\\ \""), 2, "invalid escape"},
    {S("\"\\\xC3\xA9\""), 2, "invalid escape"},
    /* UTF-8, RFC 8259 §8.1 and RFC 3629 §4. The offset is the first byte that cannot
     * continue a well-formed sequence. */
    {S("\"\x80\""), 1, "invalid UTF-8"},                     /* stray continuation byte */
    {S("\"\xBF\""), 1, "invalid UTF-8"},                     /* stray continuation byte */
    {S("\"abcdefgh\x80\""), 9, "invalid UTF-8"},             /* after a fast-path word */
    {S("\"\xC0\xAF\""), 1, "invalid UTF-8"},                 /* overlong '/' in 2 bytes */
    {S("\"\xC1\xBF\""), 1, "invalid UTF-8"},                 /* overlong U+007F */
    {S("\"\xE0\x80\xAF\""), 2, "invalid UTF-8"},             /* overlong '/' in 3 bytes */
    {S("\"\xE0\x9F\xBF\""), 2, "invalid UTF-8"},             /* overlong U+07FF */
    {S("\"\xF0\x80\x80\xAF\""), 2, "invalid UTF-8"},         /* overlong '/' in 4 bytes */
    {S("\"\xF0\x8F\xBF\xBF\""), 2, "invalid UTF-8"},         /* overlong U+FFFF */
    {S("\"\xED\xA0\x80\""), 2, "invalid UTF-8"},             /* U+D800 */
    {S("\"\xED\xBF\xBF\""), 2, "invalid UTF-8"},             /* U+DFFF */
    {S("\"\xED\xA0\xBD\xED\xB8\x80\""), 2, "invalid UTF-8"}, /* CESU-8 pair for U+1F600 */
    {S("\"\xF4\x90\x80\x80\""), 2, "invalid UTF-8"},         /* U+110000 */
    {S("\"\xF5\x80\x80\x80\""), 1, "invalid UTF-8"},         /* lead byte beyond U+10FFFF */
    {S("\"\xF8\x88\x80\x80\x80\""), 1, "invalid UTF-8"},     /* old 5-byte form */
    {S("\"\xFC\x84\x80\x80\x80\x80\""), 1, "invalid UTF-8"}, /* old 6-byte form */
    {S("\"\xFE\""), 1, "invalid UTF-8"},
    {S("\"\xFF\""), 1, "invalid UTF-8"},
    {S("\"\xC3\""), 2, "invalid UTF-8"},             /* truncated 2-byte sequence */
    {S("\"\xE2\x82\""), 3, "invalid UTF-8"},         /* truncated 3-byte sequence */
    {S("\"\xF0\x9F\x98\""), 4, "invalid UTF-8"},     /* truncated 4-byte sequence */
    {S("\"\xC3x\""), 2, "invalid UTF-8"},            /* lead byte then ASCII */
    {S("\"\xC3\xC3\xA9\""), 2, "invalid UTF-8"},     /* lead byte then lead byte */
    {S("\"\xE2\x82\xAC\xAC\""), 4, "invalid UTF-8"}, /* one continuation too many */
    /* Non-ASCII outside strings, and whitespace RFC 8259 §2 does not list. */
    {S("\xC3\xA9"), 0, "unexpected character"},
    {S("\xEF\xBB\xBF{}"), 0, "unexpected character"}, /* a byte order mark */
    {S("\xC2\xA0null"), 0, "unexpected character"},   /* NBSP */
    {S("\f1"), 0, "unexpected character"},
    {S("\v1"), 0, "unexpected character"},
    {S("[1,\f2]"), 3, "unexpected character"},
    /* Comments are not JSON. */
    {S("// c\n1"), 0, "unexpected character"},
    {S("/* c */ 1"), 0, "unexpected character"},
    {S("# c\n1"), 0, "unexpected character"},
    {S("1 // c"), 2, "trailing data"},
    {S("[1 /* c */]"), 3, "expected ',' or ']'"},
    {S("{\"a\":1 # c\n}"), 7, "expected ',' or '}'"},
};

/* Output buffers in the vector tests already hold unread bytes "EFIX" (with a consumed head
 * "PR"), so that every call also checks that it appends and never disturbs what is there. */
static void buf_with_prefix(adieu_buf_t *b)
{
    adieu_buf_init(b);
    CHECK_EQ(adieu_buf_append(b, "PREFIX", 6), 0);
    adieu_buf_consume(b, 2);
}

static bool buf_is(const adieu_buf_t *b, const uint8_t *tail, size_t tail_len)
{
    return adieu_buf_size(b) == 4 + tail_len && memcmp(adieu_buf_head(b), "EFIX", 4) == 0 &&
           (tail_len == 0 || memcmp(adieu_buf_head(b) + 4, tail, tail_len) == 0);
}

static void test_valid_vectors(void)
{
    for (size_t i = 0; i < sizeof valid_vecs / sizeof valid_vecs[0]; i++) {
        const valid_vec_t *v = &valid_vecs[i];
        adieu_buf_t out;
        buf_with_prefix(&out);
        adieu_json_error_t e = {0, NULL};
        int rc = minify_guarded(v->in, v->len, &out, &e);
        bool ok = rc == 0 && buf_is(&out, v->want, v->want_len);
        if (!ok) {
            fprintf(stderr, "valid vector %zu \"", i);
            print_escaped(v->in, v->len);
            fprintf(stderr, "\": rc %d offset %zu detail %s\n", rc, e.offset,
                    rc == ADIEU_EPROTO ? e.detail : "-");
        }
        CHECK(ok);
        /* Minified output is a fixed point. */
        adieu_buf_reset(&out);
        CHECK_EQ(minify_guarded(v->want, v->want_len, &out, &e), 0);
        CHECK_EQ(adieu_buf_size(&out), v->want_len);
        CHECK_MEM_EQ(adieu_buf_head(&out), v->want, v->want_len);
        check_prefixes(v->in, v->len, rc, &e);
        adieu_buf_free(&out);
    }
}

static void test_invalid_vectors(void)
{
    for (size_t i = 0; i < sizeof invalid_vecs / sizeof invalid_vecs[0]; i++) {
        const invalid_vec_t *v = &invalid_vecs[i];
        adieu_buf_t out;
        buf_with_prefix(&out);
        adieu_json_error_t e = {0, NULL};
        int rc = minify_guarded(v->in, v->len, &out, &e);
        bool ok = rc == ADIEU_EPROTO && e.offset == v->offset && e.detail != NULL &&
                  strcmp(e.detail, v->detail) == 0 && buf_is(&out, NULL, 0);
        if (!ok) {
            fprintf(stderr, "invalid vector %zu \"", i);
            print_escaped(v->in, v->len);
            fprintf(stderr, "\": rc %d offset %zu detail \"%s\", want offset %zu \"%s\"\n", rc,
                    e.offset, rc == ADIEU_EPROTO ? e.detail : "-", v->offset, v->detail);
        }
        CHECK(ok);
        if (rc == ADIEU_EPROTO)
            check_prefixes(v->in, v->len, rc, &e);
        adieu_buf_free(&out);
    }
}

/* The word-at-a-time string scan (attention8() and first_attention() in json.c) must find a
 * special byte in any position of a word and stop exactly at it, and the byte loop near the
 * end of the input must take over at the right place. Each kind of special byte goes at every
 * offset of a 24-byte string. */
static void test_string_fast_path(void)
{
    static const struct {
        const char *bytes; /* inserted into a run of 'a' */
        size_t len;
        bool valid;
        size_t err_after; /* error offset, counted from the inserted bytes */
        const char *detail;
    } specials[] = {
        {"\\n", 2, true, 0, NULL},
        {"\\u00E9", 6, true, 0, NULL},
        {"\xC3\xA9", 2, true, 0, NULL},
        {"\xF0\x9F\x98\x80", 4, true, 0, NULL},
        {"\x7F", 1, true, 0, NULL},
        {"\x1F", 1, false, 0, "control character in string"},
        {"\x00", 1, false, 0, "control character in string"},
        {"\x80", 1, false, 0, "invalid UTF-8"},
        {"\xC3", 1, false, 1, "invalid UTF-8"},
        {"\\x", 2, false, 1, "invalid escape"},
        {"\"", 1, false, 1, "trailing data"},
    };
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
        for (size_t pos = 0; pos < 24; pos++) {
            uint8_t in[40];
            size_t len = 0;
            in[len++] = '"';
            memset(in + len, 'a', pos);
            len += pos;
            memcpy(in + len, specials[k].bytes, specials[k].len);
            len += specials[k].len;
            memset(in + len, 'a', 24 - pos);
            len += 24 - pos;
            in[len++] = '"';
            adieu_buf_t out;
            adieu_buf_init(&out);
            adieu_json_error_t e = {0, NULL};
            int rc = minify_guarded(in, len, &out, &e);
            bool ok;
            if (specials[k].valid)
                ok = rc == 0 && adieu_buf_size(&out) == len &&
                     memcmp(adieu_buf_head(&out), in, len) == 0;
            else
                ok = rc == ADIEU_EPROTO && e.offset == 1 + pos + specials[k].err_after &&
                     strcmp(e.detail, specials[k].detail) == 0;
            if (!ok) {
                fprintf(stderr, "special %zu at %zu: rc %d offset %zu detail %s\n", k, pos, rc,
                        e.offset, rc == ADIEU_EPROTO ? e.detail : "-");
            }
            CHECK(ok);
            adieu_buf_free(&out);
        }
    }
}

/* Whitespace is skipped eight spaces at a time while a whole word of them is at hand: runs of
 * every length up to 40 between two tokens, each with one other byte at every position (a
 * tab, a newline, a CR, which are whitespace too, or an 'x', which is not) must give the
 * same output or fail at that byte, and runs that reach the end of the input must still end
 * the value there. */
static void test_whitespace_runs(void)
{
    static const uint8_t others[] = {'\t', '\n', '\r', 'x'};
    for (size_t run = 0; run <= 40; run++) {
        for (size_t k = 0; k <= sizeof others; k++) {
            for (size_t pos = 0; pos < (k < sizeof others ? run : 1); pos++) {
                uint8_t in[64];
                size_t len = 0;
                in[len++] = '[';
                in[len++] = '1';
                memset(in + len, ' ', run);
                if (k < sizeof others)
                    in[len + pos] = others[k];
                len += run;
                in[len++] = ',';
                in[len++] = '2';
                in[len++] = ']';
                adieu_buf_t out;
                adieu_buf_init(&out);
                adieu_json_error_t e = {0, NULL};
                int rc = minify_guarded(in, len, &out, &e);
                if (k < sizeof others && others[k] == 'x')
                    CHECK(rc == ADIEU_EPROTO && e.offset == 2 + pos &&
                          strcmp(e.detail, "expected ',' or ']'") == 0);
                else
                    CHECK(rc == 0 && adieu_buf_size(&out) == 5 &&
                          memcmp(adieu_buf_head(&out), "[1,2]", 5) == 0);
                adieu_buf_free(&out);
            }
        }
        /* Trailing whitespace only: the top-level value ends the input. */
        uint8_t in[64];
        in[0] = '7';
        memset(in + 1, ' ', run);
        adieu_buf_t out;
        adieu_buf_init(&out);
        adieu_json_error_t e = {0, NULL};
        CHECK(minify_guarded(in, 1 + run, &out, &e) == 0 && adieu_buf_size(&out) == 1);
        adieu_buf_free(&out);
    }
}

/* ---------------------------------------------------------------------------------------
 * Nesting limit
 * ------------------------------------------------------------------------------------- */

/* Copies the text s (without its NUL) to dst; returns its length. */
static size_t put_text(uint8_t *dst, const char *s)
{
    size_t n = 0;
    for (; s[n] != 0; n++)
        dst[n] = (uint8_t)s[n];
    return n;
}

/* Writes n copies of open, then mid, then n copies of close; returns the length. */
static size_t nest(uint8_t *dst, size_t n, const char *open, const char *mid, const char *close)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += put_text(dst + len, open);
    len += put_text(dst + len, mid);
    for (size_t i = 0; i < n; i++)
        len += put_text(dst + len, close);
    return len;
}

static void expect_deep(const uint8_t *in, size_t len, bool valid, size_t offset)
{
    adieu_buf_t out;
    adieu_buf_init(&out);
    adieu_json_error_t e = {0, NULL};
    int rc = minify_guarded(in, len, &out, &e);
    if (valid) {
        CHECK_EQ(rc, 0);
    } else {
        CHECK_EQ(rc, ADIEU_EPROTO);
        CHECK_EQ(e.offset, offset);
        CHECK(rc == ADIEU_EPROTO && strcmp(e.detail, "nesting too deep") == 0);
    }
    adieu_buf_free(&out);
}

static void test_nesting_limit(void)
{
    const size_t max = ADIEU_JSON_MAX_DEPTH;
    uint8_t *doc = malloc((size_t)100000 * 2);
    CHECK(doc != NULL);
    if (doc == NULL)
        return;

    /* Exactly the limit passes, and the output is the input. */
    size_t len = nest(doc, max, "[", "", "]");
    expect_deep(doc, len, true, 0);
    adieu_buf_t out;
    adieu_buf_init(&out);
    adieu_json_error_t e;
    CHECK_EQ(adieu_json_minify(doc, len, &out, &e), 0);
    CHECK_EQ(adieu_buf_size(&out), len);
    CHECK_MEM_EQ(adieu_buf_head(&out), doc, len);
    adieu_buf_free(&out);

    /* One more fails at the bracket that opens the extra level. */
    len = nest(doc, max + 1, "[", "", "]");
    expect_deep(doc, len, false, max);
    len = nest(doc, max, "{\"a\":", "1", "}");
    expect_deep(doc, len, true, 0);
    len = nest(doc, max + 1, "{\"a\":", "1", "}");
    expect_deep(doc, len, false, max * 5);
    len = nest(doc, max + 1, " [ {\"k\" :", "0", "} ] ");
    expect_deep(doc, len, false, (max / 2) * 9 + 1);
    /* Far deeper input is refused the same way: the stack is explicit, so this cannot
     * overflow the C stack whatever the depth. */
    len = nest(doc, 100000, "[", "", "]");
    expect_deep(doc, len, false, max);
    free(doc);
}

/* ---------------------------------------------------------------------------------------
 * The output buffer contract
 * ------------------------------------------------------------------------------------- */

static void test_out_unchanged_on_error(void)
{
    adieu_json_error_t e;
    /* Small storage, so the call must grow it: the unread bytes survive the move. */
    adieu_buf_t out;
    adieu_buf_init(&out);
    CHECK_EQ(adieu_buf_append(&out, "keep", 4), 0);
    uint8_t big[300];
    memset(big, ' ', sizeof big);
    big[0] = '[';
    big[sizeof big - 1] = '}';
    CHECK_EQ(adieu_json_minify(big, sizeof big, &out, &e), ADIEU_EPROTO);
    CHECK_EQ(e.offset, sizeof big - 1);
    CHECK_EQ(adieu_buf_size(&out), 4);
    CHECK_MEM_EQ(adieu_buf_head(&out), "keep", 4);

    /* A consumed head, so the call may slide the unread bytes down instead. */
    adieu_buf_reset(&out);
    CHECK_EQ(adieu_buf_append(&out, "0123456789abcdef", 16), 0);
    adieu_buf_consume(&out, 12);
    size_t room = out.cap - adieu_buf_size(&out);
    uint8_t *bad = malloc(room);
    CHECK(bad != NULL);
    if (bad == NULL) {
        adieu_buf_free(&out);
        return;
    }
    memset(bad, ' ', room);
    bad[0] = '"';
    bad[room - 1] = 0x01;
    CHECK_EQ(adieu_json_minify(bad, room, &out, &e), ADIEU_EPROTO);
    CHECK_EQ(e.offset, room - 1);
    CHECK_EQ(adieu_buf_size(&out), 4);
    CHECK_MEM_EQ(adieu_buf_head(&out), "cdef", 4);
    free(bad);

    /* Errors detected at once, with and without storage. */
    CHECK_EQ(adieu_json_minify(S(""), &out, &e), ADIEU_EPROTO);
    CHECK_EQ(adieu_json_minify(S("x"), &out, &e), ADIEU_EPROTO);
    CHECK_EQ(adieu_buf_size(&out), 4);
    CHECK_MEM_EQ(adieu_buf_head(&out), "cdef", 4);
    adieu_buf_free(&out);
    adieu_buf_t empty = {0};
    CHECK_EQ(adieu_json_minify(S("[1,"), &empty, &e), ADIEU_EPROTO);
    CHECK_EQ(adieu_buf_size(&empty), 0);
    adieu_buf_free(&empty);

    /* err may be NULL when the caller only wants the verdict. */
    adieu_buf_init(&out);
    CHECK_EQ(adieu_json_minify(S("[1,"), &out, NULL), ADIEU_EPROTO);
    CHECK_EQ(adieu_json_minify(S(""), &out, NULL), ADIEU_EPROTO);
    CHECK_EQ(adieu_json_minify(S(" 1 "), &out, NULL), 0);
    CHECK_EQ(adieu_buf_size(&out), 1);
    adieu_buf_free(&out);
}

static void test_append_after_content(void)
{
    adieu_json_error_t e;
    adieu_buf_t out = {0}; /* a zeroed buffer is a valid empty one */
    CHECK_EQ(adieu_buf_append(&out, "abc", 3), 0);
    CHECK_EQ(adieu_json_minify(S("[ 1 ]"), &out, &e), 0);
    CHECK_EQ(adieu_json_minify(S(" {\"k\" : \"v w\"} "), &out, &e), 0);
    CHECK_EQ(adieu_json_minify(S("[1,]"), &out, &e), ADIEU_EPROTO);
    CHECK_EQ(adieu_json_minify(S("\n7\n"), &out, &e), 0);
    static const char want[] = "abc[1]{\"k\":\"v w\"}7";
    CHECK_EQ(adieu_buf_size(&out), sizeof want - 1);
    CHECK_MEM_EQ(adieu_buf_head(&out), want, sizeof want - 1);
    adieu_buf_free(&out);
}

/* ---------------------------------------------------------------------------------------
 * jansson and its documented differences
 * ------------------------------------------------------------------------------------- */

static json_t *jansson_load(const uint8_t *in, size_t len, json_error_t *je)
{
    return json_loadb((const char *)in, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, je);
}

/* Calls fn(start, end, is_key, arg) for each string token of a valid text (start and end
 * exclude the quotes). A reference walk, deliberately unlike json.c: it trusts the input. */
static bool each_string(const uint8_t *in, size_t len,
                        bool (*fn)(const uint8_t *, const uint8_t *, bool, void *), void *arg)
{
    for (size_t i = 0; i < len; i++) {
        if (in[i] != '"')
            continue;
        size_t s = ++i;
        while (in[i] != '"')
            i += in[i] == '\\' ? 2 : 1;
        size_t j = i + 1;
        while (j < len && (in[j] == ' ' || in[j] == '\t' || in[j] == '\n' || in[j] == '\r'))
            j++;
        if (fn(in + s, in + i, j < len && in[j] == ':', arg))
            return true;
    }
    return false;
}

/* Decodes the \u escapes of a string and says whether one is a lone surrogate. */
static bool lone_surrogate(const uint8_t *p, const uint8_t *end, bool is_key, void *arg)
{
    (void)is_key;
    (void)arg;
    bool want_low = false;
    while (p < end) {
        long u = -1;
        if (p[0] == '\\' && p[1] == 'u') {
            char hex[5] = {(char)p[2], (char)p[3], (char)p[4], (char)p[5], 0};
            u = strtol(hex, NULL, 16);
        }
        bool high = u >= 0xD800 && u <= 0xDBFF, low = u >= 0xDC00 && u <= 0xDFFF;
        if (want_low != low)
            return true;
        want_low = high;
        p += u >= 0 ? 6 : p[0] == '\\' ? 2 : 1;
    }
    return want_low;
}

/* Says whether an object key holds the escape \u0000. */
static bool key_with_nul(const uint8_t *p, const uint8_t *end, bool is_key, void *arg)
{
    (void)arg;
    for (; is_key && p < end; p += p[0] == '\\' ? 2 : 1) {
        if (end - p >= 6 && memcmp(p, "\\u0000", 6) == 0)
            return true;
    }
    return false;
}

/* Says whether a valid text holds an integer (no fraction, no exponent) outside long long, or
 * a number beyond the range of double. */
static bool number_overflows(const uint8_t *in, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (in[i] == '"') {
            for (i++; in[i] != '"'; i += in[i] == '\\' ? 2 : 1)
                ;
            i++;
            continue;
        }
        if (in[i] != '-' && !(in[i] >= '0' && in[i] <= '9')) {
            i++;
            continue;
        }
        char num[512];
        size_t n = 0;
        bool real = false;
        for (; i < len && in[i] != 0 && strchr("+-.0123456789eE", in[i]) != NULL; i++) {
            real |= in[i] == '.' || in[i] == 'e' || in[i] == 'E';
            if (n < sizeof num - 1)
                num[n++] = (char)in[i];
        }
        num[n] = 0;
        if (n == sizeof num - 1)
            return true;
        if (real) {
            if (isinf(strtod(num, NULL)))
                return true;
            continue;
        }
        /* Compare digit strings with the limits rather than trust strtoll's errno. */
        const char *digits = num[0] == '-' ? num + 1 : num;
        const char *limit = num[0] == '-' ? "9223372036854775808" : "9223372036854775807";
        size_t nd = strlen(digits);
        if (nd > 19 || (nd == 19 && strcmp(digits, limit) > 0))
            return true;
    }
    return false;
}

/* For a text we accept and jansson rejects, names the documented jansson limit that explains
 * it, or returns NULL. Each case checks jansson's error code and, independently, that the
 * input really has the feature in question, so an unrelated bug cannot hide behind it. */
static const char *jansson_difference(const json_error_t *je, const uint8_t *in, size_t len)
{
    switch (json_error_code(je)) {
    case json_error_numeric_overflow:
        /* jansson converts numbers, to json_int_t (long long) when there is no fraction or
         * exponent and to double otherwise, and rejects what does not fit. RFC 8259 §6 sets
         * no range and the SPEC wants integers of any size to survive, which we do by never
         * converting. */
        return number_overflows(in, len) ? "numeric overflow" : NULL;
    case json_error_null_byte_in_key:
        /* jansson stores keys as C strings and refuses "\u0000" in a key even with
         * JSON_ALLOW_NUL; RFC 8259 §7 allows any code point to be escaped. */
        return each_string(in, len, key_with_nul, NULL) ? "NUL in key" : NULL;
    case json_error_invalid_syntax:
        /* jansson decodes \u escapes and refuses a surrogate that is not part of a pair.
         * RFC 8259 §7 defines the escape syntactically and §8.2 only warns that such strings
         * may behave unpredictably; we copy escapes as written, so they pass. */
        if (strncmp(je->text, "invalid Unicode", 15) == 0 &&
            each_string(in, len, lone_surrogate, NULL))
            return "lone surrogate escape";
        return NULL;
    default:
        return NULL;
    }
}

/* True if in[k] is a NUL byte right after a number or a literal. */
static bool nul_after_scalar(const uint8_t *in, size_t k)
{
    if (in[k] != 0 || k == 0)
        return false;
    if (in[k - 1] >= '0' && in[k - 1] <= '9')
        return true;
    return (k >= 4 && (memcmp(in + k - 4, "true", 4) == 0 || memcmp(in + k - 4, "null", 4) == 0)) ||
           (k >= 5 && memcmp(in + k - 5, "false", 5) == 0);
}

/* For a text jansson accepts and we reject, says whether jansson's known NUL bug explains it:
 * its reader keeps one byte of pushback in a buffer where a 0 byte means "empty", so a NUL
 * read as the lookahead that ends a number or a literal, then pushed back, is forgotten and
 * parsing goes on after it ("[1\0]" loads as [1]; JSONTestSuite's
 * n_multidigit_number_then_00 is this case). RFC 8259 allows no NUL outside strings, so the
 * bug is jansson's. To stay narrow this deletes exactly such bytes, one at a time where our
 * error points, and requires that we then accept a text jansson reads as the same value. */
static bool jansson_drops_nul(const uint8_t *in, size_t len, const json_t *jv)
{
    uint8_t *copy = malloc(len + 1);
    CHECK(copy != NULL);
    if (copy == NULL)
        return false;
    memcpy(copy, in, len);
    adieu_buf_t out;
    adieu_buf_init(&out);
    bool explained = false;
    for (int removed = 0; removed < 16; removed++) {
        adieu_json_error_t e;
        adieu_buf_reset(&out);
        int rc = adieu_json_minify(copy, len, &out, &e);
        if (rc == 0) {
            json_error_t je;
            json_t *j = jansson_load(adieu_buf_head(&out), adieu_buf_size(&out), &je);
            explained = removed > 0 && j != NULL && json_equal(j, jv);
            json_decref(j);
            break;
        }
        bool outside_strings = strcmp(e.detail, "trailing data") == 0 ||
                               strcmp(e.detail, "expected ',' or ']'") == 0 ||
                               strcmp(e.detail, "expected ',' or '}'") == 0;
        if (rc != ADIEU_EPROTO || !outside_strings || !nul_after_scalar(copy, e.offset))
            break;
        memmove(copy + e.offset, copy + e.offset + 1, len - e.offset - 1);
        len--;
    }
    adieu_buf_free(&out);
    free(copy);
    return explained;
}

static void expect_jansson_drops_nul(const uint8_t *in, size_t len, size_t offset)
{
    adieu_buf_t out;
    adieu_buf_init(&out);
    adieu_json_error_t e;
    CHECK_EQ(minify_guarded(in, len, &out, &e), ADIEU_EPROTO);
    CHECK_EQ(e.offset, offset);
    json_error_t je;
    json_t *j = jansson_load(in, len, &je);
    CHECK(j != NULL && jansson_drops_nul(in, len, j));
    json_decref(j);
    adieu_buf_free(&out);
}

static void expect_difference(const uint8_t *in, size_t len, const char *which)
{
    adieu_buf_t out;
    adieu_buf_init(&out);
    adieu_json_error_t e;
    CHECK_EQ(minify_guarded(in, len, &out, &e), 0);
    json_error_t je;
    json_t *j = jansson_load(in, len, &je);
    CHECK(j == NULL);
    const char *d = j == NULL ? jansson_difference(&je, in, len) : NULL;
    if (d == NULL || strcmp(d, which) != 0) {
        fprintf(stderr, "expected jansson difference \"%s\" for \"", which);
        print_escaped(in, len);
        fprintf(stderr, "\", got \"%s\" (jansson: %s)\n", d ? d : "none", j ? "-" : je.text);
    }
    CHECK(d != NULL && strcmp(d, which) == 0);
    json_decref(j);
    adieu_buf_free(&out);
}

static void expect_both_accept(const uint8_t *in, size_t len)
{
    adieu_buf_t out;
    adieu_buf_init(&out);
    adieu_json_error_t e;
    CHECK_EQ(minify_guarded(in, len, &out, &e), 0);
    json_error_t je;
    json_t *j = jansson_load(in, len, &je);
    CHECK(j != NULL);
    json_decref(j);
    adieu_buf_free(&out);
}

/* Pins each documented difference, and the edges just inside jansson's limits, so that the
 * classifier used by the differential test is known to recognise exactly these. */
static void test_jansson_known_differences(void)
{
    expect_difference(S("123456789012345678901234567890"), "numeric overflow");
    expect_difference(S("9223372036854775808"), "numeric overflow");
    expect_difference(S("[-9223372036854775809]"), "numeric overflow");
    expect_difference(S("1e400"), "numeric overflow");
    expect_difference(S("{\"a\":-1.5E+309}"), "numeric overflow");
    expect_both_accept(S("9223372036854775807"));
    expect_both_accept(S("-9223372036854775808"));
    expect_both_accept(S("1e-400")); /* underflow to zero is not an error in jansson */
    expect_both_accept(S("1.7976931348623157e308"));

    expect_difference(S("\"\\uD800\""), "lone surrogate escape");
    expect_difference(S("\"\\udfff\""), "lone surrogate escape");
    expect_difference(S("[\"\\uD800\\u0041\"]"), "lone surrogate escape");
    expect_difference(S("{\"\\uDC00\\uD800\":1}"), "lone surrogate escape");
    expect_both_accept(S("\"\\uD800\\uDC00\""));

    expect_difference(S("{\"\\u0000\":1}"), "NUL in key");
    expect_difference(S("{\"a\":{\"b\\u0000\":1}}"), "NUL in key");
    expect_both_accept(S("{\"a\":\"\\u0000\"}"));

    /* jansson's NUL bug: the NUL after a number or literal is skipped, not refused. */
    expect_jansson_drops_nul(S("1\0"), 1);
    expect_jansson_drops_nul(S("[12\0]"), 3);
    expect_jansson_drops_nul(S("[true\0, null\0]"), 5);
    expect_jansson_drops_nul(S("{\"a\":-1.5e3\0}"), 11);
    expect_jansson_drops_nul(S(" false\0 "), 6);
    json_error_t jn;
    CHECK(jansson_load(S("\"a\"\0"), &jn) == NULL); /* not after a string */
    CHECK(jansson_load(S("1\0\0"), &jn) == NULL);   /* only one byte is forgotten */

    /* jansson allows 2048 levels of nesting, we allow ADIEU_JSON_MAX_DEPTH (less: the demo
     * has no use for deep documents), so depths in between are refused by us alone. Not a
     * case for the differential test, which stays far below both limits. */
    uint8_t deep[2 * (ADIEU_JSON_MAX_DEPTH + 1)];
    size_t len = nest(deep, ADIEU_JSON_MAX_DEPTH + 1, "[", "", "]");
    json_error_t je;
    json_t *j = jansson_load(deep, len, &je);
    CHECK(j != NULL);
    json_decref(j);
    expect_deep(deep, len, false, ADIEU_JSON_MAX_DEPTH);
}

/* ---------------------------------------------------------------------------------------
 * Differential test against jansson
 * ------------------------------------------------------------------------------------- */

static uint64_t rng_state;

/* splitmix64: tiny, seedable, and good enough to drive a generator. */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng_next() % n);
}

static void put(adieu_buf_t *b, const void *p, size_t n)
{
    CHECK_EQ(adieu_buf_append(b, p, n), 0);
}

static void putc_(adieu_buf_t *b, uint8_t c)
{
    put(b, &c, 1);
}

static void gen_ws(adieu_buf_t *b)
{
    static const char ws[] = " \t\n\r";
    if (rng_below(2) == 0)
        return;
    for (uint32_t n = 1 + rng_below(3); n > 0; n--)
        putc_(b, (uint8_t)ws[rng_below(4)]);
}

static void gen_digits(adieu_buf_t *b, uint32_t n)
{
    while (n-- > 0)
        putc_(b, (uint8_t)('0' + rng_below(10)));
}

/* Numbers are kept well inside long long and double: jansson refuses the rest (see
 * jansson_difference()); huge numbers are covered by the vectors instead. */
static void gen_number(adieu_buf_t *b)
{
    if (rng_below(4) == 0)
        putc_(b, '-');
    if (rng_below(5) == 0) {
        putc_(b, '0');
    } else {
        putc_(b, (uint8_t)('1' + rng_below(9)));
        gen_digits(b, rng_below(rng_below(4) == 0 ? 17 : 4));
    }
    if (rng_below(3) == 0) {
        putc_(b, '.');
        gen_digits(b, 1 + rng_below(8));
    }
    if (rng_below(4) == 0) {
        putc_(b, rng_below(2) ? 'e' : 'E');
        uint32_t sign = rng_below(3);
        if (sign > 0)
            putc_(b, sign == 1 ? '+' : '-');
        gen_digits(b, 1 + rng_below(2));
    }
}

static void put_utf8(adieu_buf_t *b, uint32_t cp)
{
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | cp >> 6);
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | cp >> 12);
        u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | cp >> 18);
        u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    put(b, u, n);
}

static void put_u_escape(adieu_buf_t *b, uint32_t u)
{
    static const char lower[] = "0123456789abcdef", upper[] = "0123456789ABCDEF";
    const char *hex = rng_below(2) ? lower : upper;
    char esc[6] = {'\\', 'u', hex[u >> 12 & 15], hex[u >> 8 & 15], hex[u >> 4 & 15], hex[u & 15]};
    put(b, esc, sizeof esc);
}

/* A random code point that UTF-8 may encode: no surrogates, edges often. */
static uint32_t gen_code_point(void)
{
    static const uint32_t edges[] = {0x80,   0x7FF,  0x800,   0xD7FF,  0xE000,
                                     0xFFFD, 0xFFFF, 0x10000, 0x10FFFF};
    uint32_t cp;
    switch (rng_below(4)) {
    case 0:
        return edges[rng_below(sizeof edges / sizeof edges[0])];
    case 1:
        return 0x80 + rng_below(0x800 - 0x80);
    case 2:
        cp = 0x800 + rng_below(0x10000 - 0x800);
        return cp >= 0xD800 && cp <= 0xDFFF ? cp + 0x800 : cp;
    default:
        return 0x10000 + rng_below(0x110000 - 0x10000);
    }
}

/* Strings mix long plain runs (the word-at-a-time path) with escapes and raw UTF-8. \u escapes
 * are never lone surrogates, and \u0000 appears only outside keys: jansson refuses both (see
 * jansson_difference()). */
static void gen_string(adieu_buf_t *b, bool is_key)
{
    static const char simple[] = "\"\\/bfnrt";
    putc_(b, '"');
    for (uint32_t n = rng_below(8); n > 0; n--) {
        switch (rng_below(7)) {
        case 0:
        case 1:
            for (uint32_t k = 1 + rng_below(24); k > 0; k--) {
                uint8_t c = (uint8_t)(0x20 + rng_below(0x5F));
                putc_(b, c == '"' || c == '\\' ? 'q' : c);
            }
            break;
        case 2:
            putc_(b, '\\');
            putc_(b, (uint8_t)simple[rng_below(sizeof simple - 1)]);
            break;
        case 3: {
            uint32_t u = rng_below(4) == 0 ? rng_below(0x20) : rng_below(0x10000);
            if (u >= 0xD800 && u <= 0xDFFF)
                u -= 0x800;
            if (u == 0 && is_key)
                u = 1;
            put_u_escape(b, u);
            break;
        }
        case 4:
            put_u_escape(b, 0xD800 + rng_below(0x400));
            put_u_escape(b, 0xDC00 + rng_below(0x400));
            break;
        case 5:
            put_utf8(b, gen_code_point());
            break;
        default:
            putc_(b, 0x7F);
            break;
        }
    }
    putc_(b, '"');
}

typedef struct {
    int budget;    /* values still allowed in this document */
    int max_depth; /* containers nest no deeper than this */
} gen_t;

static void gen_value(adieu_buf_t *b, gen_t *g, int depth)
{
    static const char *const literals[] = {"true", "false", "null"};
    gen_ws(b);
    g->budget--;
    uint32_t kind = rng_below(depth >= g->max_depth || g->budget <= 0 ? 5 : 8);
    switch (kind) {
    case 0:
    case 1:
        gen_number(b);
        break;
    case 2:
    case 3:
        gen_string(b, false);
        break;
    case 4: {
        const char *lit = literals[rng_below(3)];
        put(b, lit, strlen(lit));
        break;
    }
    case 5:
        putc_(b, '[');
        gen_ws(b);
        for (uint32_t i = 0, n = rng_below(6); i < n; i++) {
            if (i > 0)
                putc_(b, ',');
            gen_value(b, g, depth + 1);
            gen_ws(b);
        }
        putc_(b, ']');
        break;
    default: {
        putc_(b, '{');
        gen_ws(b);
        size_t last_key = 0, last_key_len = 0;
        for (uint32_t i = 0, n = rng_below(6); i < n; i++) {
            if (i > 0)
                putc_(b, ',');
            gen_ws(b);
            /* Duplicate keys now and then: both sides must keep or resolve them alike. */
            if (last_key_len > 0 && rng_below(4) == 0) {
                uint8_t key[512];
                size_t kl = last_key_len < sizeof key ? last_key_len : sizeof key;
                memcpy(key, b->data + last_key, kl);
                put(b, key, kl);
            } else {
                last_key = b->len;
                gen_string(b, true);
                last_key_len = b->len - last_key;
                if (last_key_len > 512)
                    last_key_len = 0;
            }
            gen_ws(b);
            putc_(b, ':');
            gen_value(b, g, depth + 1);
            gen_ws(b);
        }
        putc_(b, '}');
        break;
    }
    }
}

/* Bytes that matter to a JSON scanner, for mutations that have a chance of staying close to
 * valid or of hitting an edge. */
static const uint8_t interesting[] = {
    '{',  '}',  '[',  ']',  ',',  ':',  '"',  '\\', '0',  '1',  '9',  '-',  '+',  '.',
    'e',  'E',  't',  'f',  'n',  'u',  'l',  'a',  'D',  '/',  '\'', '#',  ' ',  '\t',
    '\n', '\r', 0x00, 0x01, 0x0B, 0x0C, 0x1F, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
    0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
};

static uint8_t mutation_byte(void)
{
    return rng_below(2) ? interesting[rng_below(sizeof interesting)] : (uint8_t)rng_below(256);
}

/* A short string of JSON-ish bytes, mostly invalid, reaching corners that mutations of valid
 * documents seldom do ("-0e", "[{]", "\"\\u", ...). */
static void gen_soup(adieu_buf_t *b)
{
    for (uint32_t n = rng_below(12); n > 0; n--)
        putc_(b, mutation_byte());
}

/* Applies one to three byte flips, insertions, deletions or truncations to b. */
static void mutate(adieu_buf_t *b)
{
    for (uint32_t n = 1 + rng_below(3); n > 0; n--) {
        size_t len = b->len;
        size_t at = len > 0 ? rng_below((uint32_t)len) : 0;
        switch (rng_below(len > 0 ? 6 : 1)) {
        case 0: /* insertion */
            putc_(b, 0);
            memmove(b->data + at + 1, b->data + at, len - at);
            b->data[at] = mutation_byte();
            break;
        case 1: /* byte replaced */
        case 2:
            b->data[at] = mutation_byte();
            break;
        case 3: /* bit flip */
            b->data[at] ^= (uint8_t)(1u << rng_below(8));
            break;
        case 4: /* deletion */
            memmove(b->data + at, b->data + at + 1, len - at - 1);
            b->len--;
            break;
        default: /* truncation */
            b->len = at;
            break;
        }
    }
}

/* The minified form by the simplest possible rule, for valid input only: drop whitespace
 * outside strings. Our output must equal it byte for byte. */
static size_t reference_minify(const uint8_t *in, size_t len, uint8_t *o)
{
    size_t n = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
        if (in_string) {
            o[n++] = c;
            if (c == '\\')
                o[n++] = in[++i];
            else if (c == '"')
                in_string = false;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            o[n++] = c;
            in_string = c == '"';
        }
    }
    return n;
}

typedef struct {
    size_t cases, valid, invalid;
    size_t overflow, lone_surrogate, nul_key; /* known jansson differences */
    size_t dropped_nul;                       /* the known jansson bug */
    size_t disagreements;
    size_t prefix_checked;
} diff_stats_t;

static void report_disagreement(const uint8_t *in, size_t len, int rc, const adieu_json_error_t *e,
                                const json_error_t *je, bool jok)
{
    fprintf(stderr, "disagreement with jansson on \"");
    print_escaped(in, len);
    fprintf(stderr, "\": ours rc %d", rc);
    if (rc == ADIEU_EPROTO)
        fprintf(stderr, " (offset %zu, %s)", e->offset, e->detail);
    fprintf(stderr, ", jansson %s", jok ? "accepts" : "rejects");
    if (!jok)
        fprintf(stderr, " (position %d, %s)", je->position, je->text);
    fprintf(stderr, "\n");
}

static void diff_case(const uint8_t *in, size_t len, adieu_buf_t *out, uint8_t *scratch,
                      diff_stats_t *st)
{
    st->cases++;
    adieu_json_error_t e = {0, NULL};
    int rc = minify_guarded(in, len, out, &e);
    json_error_t je;
    json_t *j = jansson_load(in, len, &je);

    if (rc == 0 && j != NULL) {
        st->valid++;
        const uint8_t *o = adieu_buf_head(out) + 4;
        size_t olen = adieu_buf_size(out) - 4;
        CHECK_MEM_EQ(adieu_buf_head(out), "EFIX", 4);
        /* The tokens are kept exactly... */
        size_t rlen = reference_minify(in, len, scratch);
        CHECK_EQ(olen, rlen);
        CHECK(olen == rlen && memcmp(o, scratch, rlen) == 0);
        /* ...so the value is the same one, as jansson sees it. */
        json_error_t je2;
        json_t *j2 = jansson_load(o, olen, &je2);
        CHECK(j2 != NULL && json_equal(j, j2));
        json_decref(j2);
    } else if (rc == ADIEU_EPROTO && j == NULL) {
        st->invalid++;
        CHECK(buf_is(out, NULL, 0));
        /* The offset rule on a sample: cheap enough for short inputs only. */
        if (len <= 256 && st->invalid % 8 == 0) {
            st->prefix_checked++;
            check_prefixes(in, len, rc, &e);
        }
    } else if (rc == 0 && j == NULL) {
        const char *d = jansson_difference(&je, in, len);
        if (d == NULL) {
            st->disagreements++;
            report_disagreement(in, len, rc, &e, &je, false);
        } else if (strcmp(d, "numeric overflow") == 0) {
            st->overflow++;
        } else if (strcmp(d, "lone surrogate escape") == 0) {
            st->lone_surrogate++;
        } else {
            st->nul_key++;
        }
    } else if (rc == ADIEU_EPROTO && jansson_drops_nul(in, len, j)) {
        st->dropped_nul++;
    } else {
        st->disagreements++;
        report_disagreement(in, len, rc, &e, &je, j != NULL);
    }
    json_decref(j);
    /* Back to the prefix alone for the next case. */
    out->len = out->off + 4;
}

static void test_differential(void)
{
    uint64_t seed = 20240611;
    size_t docs = 20000;
    const char *s = getenv("ADIEU_JSON_SEED");
    if (s != NULL)
        seed = strtoull(s, NULL, 0);
    s = getenv("ADIEU_JSON_DOCS");
    if (s != NULL)
        docs = strtoull(s, NULL, 0);
    rng_state = seed;

    diff_stats_t st = {0};
    adieu_buf_t doc, mutant, out;
    adieu_buf_init(&doc);
    adieu_buf_init(&mutant);
    buf_with_prefix(&out);
    size_t scratch_cap = 4096;
    uint8_t *scratch = malloc(scratch_cap);
    CHECK(scratch != NULL);
    if (scratch == NULL)
        return;

    for (size_t d = 0; d < docs; d++) {
        adieu_buf_reset(&doc);
        /* Mostly small documents, some wide ones, and now and then a deep narrow one; all far
         * below both nesting limits. */
        gen_t g = {1 + (int)rng_below(40), 1 + (int)rng_below(6)};
        if (rng_below(50) == 0) {
            g.budget = 300;
            g.max_depth = 40;
        }
        gen_value(&doc, &g, 0);
        gen_ws(&doc);
        /* Room for the reference output of the document and of its mutants, which are at
         * most 3 bytes longer, and of the soup (under 12 bytes). */
        if (doc.len + 16 > scratch_cap) {
            scratch_cap = doc.len * 2 + 16;
            free(scratch);
            scratch = malloc(scratch_cap);
            CHECK(scratch != NULL);
            if (scratch == NULL)
                break;
        }
        diff_case(doc.data, doc.len, &out, scratch, &st);
        for (int m = 0; m < 4; m++) {
            adieu_buf_reset(&mutant);
            put(&mutant, doc.data, doc.len);
            mutate(&mutant);
            diff_case(mutant.data, mutant.len, &out, scratch, &st);
        }
        adieu_buf_reset(&mutant);
        gen_soup(&mutant);
        diff_case(mutant.data, mutant.len, &out, scratch, &st);
    }
    printf("differential (seed %llu): %zu cases, %zu valid, %zu invalid, %zu prefix-checked; "
           "known jansson differences: %zu numeric overflow, %zu lone surrogate escape, "
           "%zu NUL in key; jansson NUL bug: %zu; %zu disagreements\n",
           (unsigned long long)seed, st.cases, st.valid, st.invalid, st.prefix_checked, st.overflow,
           st.lone_surrogate, st.nul_key, st.dropped_nul, st.disagreements);
    CHECK_EQ(st.disagreements, 0);
    /* A generator that stopped producing valid or invalid input would test nothing. */
    CHECK(st.valid > docs / 2);
    CHECK(st.invalid > docs);
    free(scratch);
    adieu_buf_free(&doc);
    adieu_buf_free(&mutant);
    adieu_buf_free(&out);
}

int main(void)
{
    guard_init();
    CHECK_RUN(test_valid_vectors);
    CHECK_RUN(test_invalid_vectors);
    CHECK_RUN(test_string_fast_path);
    CHECK_RUN(test_whitespace_runs);
    CHECK_RUN(test_nesting_limit);
    CHECK_RUN(test_out_unchanged_on_error);
    CHECK_RUN(test_append_after_content);
    CHECK_RUN(test_jansson_known_differences);
    CHECK_RUN(test_differential);
    guard_free(guard_base, GUARD_AREA);
    return check_done();
}
