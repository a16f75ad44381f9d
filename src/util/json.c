/* SPDX-License-Identifier: MIT */
/*
 * The strict RFC 8259 validating minifier behind the demo app (SPEC section 4, "Demo JSON").
 *
 * Design. The output is the input with the whitespace between tokens removed: RFC 8259 §2
 * allows insignificant whitespace only before or after the six structural characters, and
 * around the top-level value, so every other byte is part of a token and is copied as written.
 * The scanner therefore never copies token by token: it keeps the start of the pending run
 * of non-whitespace input and copies the whole run with one memcpy whenever it skips
 * whitespace, and once at the end. Already-minified input costs a single memcpy.
 *
 * Nesting is tracked on an explicit stack of ADIEU_JSON_MAX_DEPTH bytes (the closing
 * bracket of each open container), never by recursion, so no input can overflow the C stack.
 *
 * Error offsets. The scanner reads the input once, left to right, and stops at the first byte
 * that cannot continue any valid JSON text; err->offset is that byte's offset, which is also
 * the length of the longest prefix of the input that is still the start of a valid text.
 * Where the input simply ends too early ("unterminated array", "empty input", ...), the
 * offset is the input length. For invalid UTF-8 this points at the byte that breaks the
 * sequence (0x80 in E0 80 80), not at the lead byte, by the same rule.
 *
 * Nothing is committed to the output buffer until the whole input has been validated, so on
 * error the caller's buffer holds exactly the unread bytes it held at entry.
 */
#include <stdbool.h>
#include <string.h>

#include "adieu/errors.h"
#include "util/json.h"

/* The first error found: where it is and a short static phrase. */
typedef struct {
    const uint8_t *at;
    const char *detail;
} fail_t;

/* Records an error and returns NULL, so scanners can end with `return fail(...)`. */
static const uint8_t *fail(fail_t *f, const uint8_t *at, const char *detail)
{
    f->at = at;
    f->detail = detail;
    return NULL;
}

/* RFC 8259 §2: ws = *( %x20 / %x09 / %x0A / %x0D ). Nothing else is whitespace (no form
 * feed, no vertical tab, no NBSP, no BOM). */
static inline bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline bool is_digit(uint8_t c)
{
    return (unsigned)(c - '0') < 10u;
}

static inline bool is_hex(uint8_t c)
{
    return is_digit(c) || (unsigned)((c | 0x20) - 'a') < 6u;
}

/* Eight spaces, as one word: the indentation of pretty-printed input comes in such runs. */
#define SPACES8 UINT64_C(0x2020202020202020)

/* Skips whitespace at p. When there is some, the pending run [*run, p) is copied to *o
 * first, and the run restarts after the whitespace. */
static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end, uint8_t **o,
                                     const uint8_t **run)
{
    if (p == end || !is_ws(*p))
        return p;
    size_t n = (size_t)(p - *run);
    memcpy(*o, *run, n);
    *o += n;
    do {
        p++;
        /* Indentation: eight spaces at a time while a whole word of them is at hand (the
         * word equals SPACES8 only if each of its bytes is a space, whatever the byte order),
         * then the byte loop for the rest and for the other whitespace characters. */
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, sizeof x);
            if (x != SPACES8)
                break;
            p += 8;
        }
    } while (p < end && is_ws(*p));
    *run = p;
    return p;
}

/* 1 for the bytes a string may hold as they are and that need no further check: printable
 * ASCII except '"' and '\\' (RFC 8259 §7: unescaped = %x20-21 / %x23-5B / %x5D-10FFFF).
 * Control characters, '"', '\\' and every byte >= 0x80 (the start of a UTF-8 sequence, or an
 * invalid byte) are 0 and leave the fast loop; the entries from 0x80 up are left to the
 * implicit zero initialisation. */
static const uint8_t str_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 control characters */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 control characters */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 '"' is 0x22 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50 '\\' is 0x5C */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 (DEL is allowed unescaped) */
};

/* Nonzero if any of the 8 bytes at p is not plain (see str_plain), tested on one 64-bit
 * word. Each term is the classic "has a byte below n" test, (x - n*ones) & ~x & highs, which
 * is exact as a yes/no answer: a byte sets its high bit in the result only if it is itself
 * below n, or if a lower byte below n borrowed from it, and then the answer is yes anyway.
 * XOR with '"' or '\\' turns those bytes into zero; it keeps bit 7, so ~x serves all three
 * terms. Bytes with bit 7 set are caught by the last term.
 *
 * The lowest flagged byte of the result (in the load's order of significance) is exact too:
 * a borrow only runs from a less significant byte that is itself below n, so that byte is
 * flagged as well. first_attention() uses this on little-endian machines, where the least
 * significant byte is the first in memory. */
static inline uint64_t attention8(const uint8_t *p)
{
    const uint64_t ones = 0x0101010101010101u;
    const uint64_t highs = 0x8080808080808080u;
    uint64_t x;
    memcpy(&x, p, sizeof x);
    uint64_t quote = x ^ (ones * '"');
    uint64_t bslash = x ^ (ones * '\\');
    uint64_t low = (x - ones * 0x20u) | (quote - ones) | (bslash - ones);
    return (low & ~x & highs) | (x & highs);
}

/* The first byte at or after p that is not plain, given mask = attention8(p) != 0 (so it
 * lies within the 8 bytes at p). With GCC or Clang on a little-endian machine that is where
 * the mask's lowest set bit is; elsewhere the bytes are looked at one by one. */
static inline const uint8_t *first_attention(const uint8_t *p, uint64_t mask)
{
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return p + ((unsigned)__builtin_ctzll(mask) >> 3);
#else
    (void)mask;
    while (str_plain[*p])
        p++;
    return p;
#endif
}

/* Checks one escape sequence; p points at the backslash. RFC 8259 §7 allows exactly
 * \" \\ \/ \b \f \n \r \t and \u followed by four hex digits of either case. A \u escape of
 * a lone surrogate (\uD800 without a following \uDC00-\uDFFF) is accepted: §7 defines the
 * escape syntactically and §8.2 only notes that such strings may behave unpredictably in
 * receivers; since the escape is copied as written, nothing here needs its meaning. */
static const uint8_t *scan_escape(const uint8_t *p, const uint8_t *end, fail_t *f)
{
    if (end - p < 2)
        return fail(f, end, "unterminated string");
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return p + 2;
    case 'u':
        for (int i = 2; i < 6; i++) {
            if (p + i == end)
                return fail(f, end, "unterminated string");
            if (!is_hex(p[i]))
                return fail(f, p + i, "invalid escape");
        }
        return p + 6;
    default:
        return fail(f, p + 1, "invalid escape");
    }
}

/* Checks one UTF-8 sequence; p points at a byte >= 0x80. RFC 8259 §8.1 requires UTF-8, and
 * RFC 3629 §4 gives the well-formed sequences:
 *   C2..DF 80..BF
 *   E0 A0..BF 80..BF | E1..EC 80..BF 80..BF | ED 80..9F 80..BF | EE..EF 80..BF 80..BF
 *   F0 90..BF 80..BF 80..BF | F1..F3 80..BF 80..BF 80..BF | F4 80..8F 80..BF 80..BF
 * The narrowed second-byte ranges are what exclude overlong forms (E0, F0), the UTF-16
 * surrogates U+D800..DFFF (ED) and code points above U+10FFFF (F4). C0, C1, F5..FF and a
 * continuation byte with no lead byte can start nothing. */
static const uint8_t *scan_utf8(const uint8_t *p, const uint8_t *end, fail_t *f)
{
    uint8_t c = p[0];
    uint8_t lo = 0x80, hi = 0xBF;
    int n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return fail(f, p, "invalid UTF-8");
    }
    for (int i = 1; i < n; i++) {
        if (p + i == end)
            return fail(f, end, "unterminated string");
        if (p[i] < lo || p[i] > hi)
            return fail(f, p + i, "invalid UTF-8");
        lo = 0x80;
        hi = 0xBF;
    }
    return p + n;
}

/* Checks a string; p points at the opening quote. Returns the byte after the closing one. */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *end, fail_t *f)
{
    p++;
    for (;;) {
        /* The ASCII fast path: whole words of plain bytes, then straight to the byte that
         * needs attention in the word that holds one; fewer than 8 bytes before the end are
         * looked at one by one. */
        for (;;) {
            if (end - p < 8) {
                while (p < end && str_plain[*p])
                    p++;
                break;
            }
            uint64_t mask = attention8(p);
            if (mask != 0) {
                p = first_attention(p, mask);
                break;
            }
            p += 8;
        }
        if (p == end)
            return fail(f, end, "unterminated string");
        uint8_t c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\')
            p = scan_escape(p, end, f);
        else if (c < 0x20)
            /* RFC 8259 §7: U+0000 through U+001F must be escaped. */
            return fail(f, p, "control character in string");
        else
            p = scan_utf8(p, end, f);
        if (p == NULL)
            return NULL;
    }
}

/* Checks a number; p points at '-' or a digit. RFC 8259 §6:
 *   number = [ minus ] int [ frac ] [ exp ]
 *   int = zero / ( digit1-9 *DIGIT ),  frac = "." 1*DIGIT,  exp = e [ minus / plus ] 1*DIGIT
 * No range is imposed (§6 leaves that to implementations): the digits are copied, never
 * converted, so integers of any size survive. */
static const uint8_t *scan_number(const uint8_t *p, const uint8_t *end, fail_t *f)
{
    if (*p == '-') {
        p++;
        if (p == end)
            return fail(f, end, "invalid number");
    }
    if (*p == '0') {
        p++;
        /* "01" would otherwise end the number after "0" and fail later as trailing data or a
         * missing comma; naming the cause is kinder. */
        if (p < end && is_digit(*p))
            return fail(f, p, "leading zero");
    } else if (is_digit(*p)) {
        do
            p++;
        while (p < end && is_digit(*p));
    } else {
        return fail(f, p, "invalid number");
    }
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p))
            return fail(f, p, "invalid number");
        do
            p++;
        while (p < end && is_digit(*p));
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return fail(f, p, "invalid number");
        do
            p++;
        while (p < end && is_digit(*p));
    }
    return p;
}

/* Checks the literal lit (RFC 8259 §3: exactly "true", "false", "null", lowercase) at p,
 * whose first byte already matched. */
static const uint8_t *scan_literal(const uint8_t *p, const uint8_t *end, const char *lit, size_t n,
                                   fail_t *f)
{
    for (size_t i = 1; i < n; i++) {
        if (p + i == end)
            return fail(f, end, "invalid literal");
        if (p[i] != (uint8_t)lit[i])
            return fail(f, p + i, "invalid literal");
    }
    return p + n;
}

static const char *unterminated(uint8_t closer)
{
    return closer == ']' ? "unterminated array" : "unterminated object";
}

int adieu_json_minify(const uint8_t *in, size_t len, adieu_buf_t *out, adieu_json_error_t *err)
{
    fail_t f = {NULL, NULL};

    if (len == 0) {
        /* RFC 8259 §2: JSON-text = ws value ws; a value is required. */
        if (err != NULL) {
            err->offset = 0;
            err->detail = "empty input";
        }
        return ADIEU_EPROTO;
    }
    /* The output is never longer than the input, so one reservation covers it. NOTE: the
     * reservation may move out's unread bytes to the front of its storage (changing off and
     * len but not the bytes); nothing is committed before the input is known valid. */
    uint8_t *dst = adieu_buf_reserve(out, len);
    if (dst == NULL)
        return ADIEU_ENOMEM;

    const uint8_t *p = in;
    const uint8_t *end = in + len;
    const uint8_t *run = in; /* start of the input not yet copied to o */
    uint8_t *o = dst;
    uint8_t stack[ADIEU_JSON_MAX_DEPTH]; /* closing byte of each open container */
    size_t depth = 0;

    /* The scanner is a small state machine whose states are the labels below: a value is
     * expected (value), a value just ended (after_value), an object key is expected (key). */
value:
    p = skip_ws(p, end, &o, &run);
    if (p == end) {
        fail(&f, p, depth == 0 ? "empty input" : unterminated(stack[depth - 1]));
        goto error;
    }
    switch (*p) {
    case '"':
        p = scan_string(p, end, &f);
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        p = scan_number(p, end, &f);
        break;
    case 't':
        p = scan_literal(p, end, "true", 4, &f);
        break;
    case 'f':
        p = scan_literal(p, end, "false", 5, &f);
        break;
    case 'n':
        p = scan_literal(p, end, "null", 4, &f);
        break;
    case '[':
    case '{':
        if (depth == ADIEU_JSON_MAX_DEPTH) {
            fail(&f, p, "nesting too deep");
            goto error;
        }
        stack[depth++] = *p == '[' ? ']' : '}';
        p = skip_ws(p + 1, end, &o, &run);
        /* An empty container is handled here, so that a closing bracket met later where a
         * value or key is expected can only follow a comma. */
        if (p < end && *p == stack[depth - 1]) {
            depth--;
            p++;
            goto after_value;
        }
        if (stack[depth - 1] == '}')
            goto key;
        goto value;
    default:
        /* RFC 8259 §5: value-separator only between values; "[1,]" is not JSON. */
        fail(&f, p,
             *p == ']' && depth > 0 && stack[depth - 1] == ']' ? "trailing comma"
                                                               : "unexpected character");
        goto error;
    }
    if (p == NULL)
        goto error;

after_value:
    if (depth == 0) {
        /* RFC 8259 §2: nothing but whitespace may follow the top-level value. */
        p = skip_ws(p, end, &o, &run);
        if (p != end) {
            fail(&f, p, "trailing data");
            goto error;
        }
        size_t n = (size_t)(end - run);
        memcpy(o, run, n);
        o += n;
        adieu_buf_commit(out, (size_t)(o - dst));
        return 0;
    }
    p = skip_ws(p, end, &o, &run);
    if (p == end) {
        fail(&f, p, unterminated(stack[depth - 1]));
        goto error;
    }
    if (*p == ',') {
        p++;
        if (stack[depth - 1] == '}')
            goto key;
        goto value;
    }
    if (*p == stack[depth - 1]) {
        depth--;
        p++;
        goto after_value;
    }
    fail(&f, p, stack[depth - 1] == ']' ? "expected ',' or ']'" : "expected ',' or '}'");
    goto error;

key:
    /* RFC 8259 §4: member = string name-separator value. */
    p = skip_ws(p, end, &o, &run);
    if (p == end) {
        fail(&f, p, "unterminated object");
        goto error;
    }
    if (*p != '"') {
        fail(&f, p, *p == '}' ? "trailing comma" : "expected string key");
        goto error;
    }
    p = scan_string(p, end, &f);
    if (p == NULL)
        goto error;
    p = skip_ws(p, end, &o, &run);
    if (p == end) {
        fail(&f, p, "unterminated object");
        goto error;
    }
    if (*p != ':') {
        fail(&f, p, "expected ':'");
        goto error;
    }
    p++;
    goto value;

error:
    if (err != NULL) {
        err->offset = (size_t)(f.at - in);
        err->detail = f.detail;
    }
    return ADIEU_EPROTO;
}
