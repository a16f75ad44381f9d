/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for the JSON minifier (util/json.h).
 *
 * Input: byte 0 picks what the output buffer already holds (bits 0-5: bytes from an earlier
 * use, some of them consumed, so that the minifier appends after unread bytes and may have to
 * move them), whether allocations fail (bit 6) and whether err is NULL (bit 7); the rest is
 * the text. The minifier is one-shot, so there is no chunking here.
 *
 * Invariants:
 *   - it accepts exactly what an independent recursive-descent RFC 8259 checker accepts, and
 *     on a refusal reports the same error offset: the first byte that cannot continue any
 *     valid text, or the input length when the text ends too early;
 *   - on success the output is never longer than the input, equals the input with the
 *     whitespace outside strings removed, and minify(minify(x)) == minify(x); whitespace
 *     around the value changes nothing;
 *   - the bytes the buffer held at entry are kept, and on error (ADIEU_ENOMEM too, when
 *     the output needs storage it cannot get) nothing is added.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "util/buf.h"
#include "util/json.h"

#include "fuzz.h"

/* ---------------------------------------------------------------------------------------
 * The reference checker: recursive descent over RFC 8259, stopping at the first byte that
 * breaks the grammar. Recursion is bounded by ADIEU_JSON_MAX_DEPTH.
 * ------------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n;
    size_t i;   /* next byte */
    bool error; /* then i is the error offset */
} ref_t;

static bool ref_fail(ref_t *r, size_t at)
{
    r->error = true;
    r->i = at;
    return false;
}

static bool ref_is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool ref_is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static void ref_ws(ref_t *r)
{
    while (r->i < r->n && ref_is_ws(r->p[r->i])) {
        r->i++;
    }
}

/* One UTF-8 sequence at r->i (a byte >= 0x80), judged by fuzz.h's Table 3-7 walk over at
 * most four bytes. */
static bool ref_utf8(ref_t *r)
{
    uint8_t c = r->p[r->i];
    size_t len = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : 4;
    size_t window = r->n - r->i < 4 ? r->n - r->i : 4;
    bool open;
    size_t bad = fuzz_utf8_first_bad(r->p + r->i, window, &open);
    if (bad == 0) {
        return ref_fail(r, r->i);
    }
    if (window < len) {
        /* Truncated by the end of the input, unless a bad byte comes first. */
        return ref_fail(r, bad < window ? r->i + bad : r->n);
    }
    if (bad < len) {
        return ref_fail(r, r->i + bad);
    }
    r->i += len;
    return true;
}

static bool ref_string(ref_t *r)
{
    r->i++; /* the opening quote */
    for (;;) {
        if (r->i == r->n) {
            return ref_fail(r, r->n);
        }
        uint8_t c = r->p[r->i];
        if (c == '"') {
            r->i++;
            return true;
        }
        if (c == '\\') {
            if (r->i + 1 == r->n) {
                return ref_fail(r, r->n);
            }
            uint8_t e = r->p[r->i + 1];
            if (e != 'u') {
                if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                    e == 'r' || e == 't') {
                    r->i += 2;
                    continue;
                }
                return ref_fail(r, r->i + 1);
            }
            for (size_t k = 2; k < 6; k++) {
                if (r->i + k == r->n) {
                    return ref_fail(r, r->n);
                }
                uint8_t h = r->p[r->i + k];
                bool hex = ref_is_digit(h) || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F');
                if (!hex) {
                    return ref_fail(r, r->i + k);
                }
            }
            r->i += 6;
        } else if (c < 0x20) {
            return ref_fail(r, r->i);
        } else if (c >= 0x80) {
            if (!ref_utf8(r)) {
                return false;
            }
        } else {
            r->i++;
        }
    }
}

/* One or more digits at r->i, or an error there (or at the end). */
static bool ref_digits(ref_t *r)
{
    if (r->i == r->n || !ref_is_digit(r->p[r->i])) {
        return ref_fail(r, r->i);
    }
    while (r->i < r->n && ref_is_digit(r->p[r->i])) {
        r->i++;
    }
    return true;
}

static bool ref_number(ref_t *r)
{
    if (r->p[r->i] == '-') {
        r->i++;
    }
    if (r->i < r->n && r->p[r->i] == '0') {
        r->i++;
    } else if (!ref_digits(r)) {
        return false;
    }
    if (r->i < r->n && r->p[r->i] == '.') {
        r->i++;
        if (!ref_digits(r)) {
            return false;
        }
    }
    if (r->i < r->n && (r->p[r->i] == 'e' || r->p[r->i] == 'E')) {
        r->i++;
        if (r->i < r->n && (r->p[r->i] == '+' || r->p[r->i] == '-')) {
            r->i++;
        }
        if (!ref_digits(r)) {
            return false;
        }
    }
    return true;
}

static bool ref_literal(ref_t *r, const char *lit)
{
    for (size_t k = 0; lit[k] != '\0'; k++) {
        if (r->i + k == r->n) {
            return ref_fail(r, r->n);
        }
        if (r->p[r->i + k] != (uint8_t)lit[k]) {
            return ref_fail(r, r->i + k);
        }
    }
    r->i += strlen(lit);
    return true;
}

static bool ref_value(ref_t *r, size_t depth);

/* An array or object at r->i; depth counts the containers already open. */
static bool ref_container(ref_t *r, size_t depth)
{
    uint8_t close = r->p[r->i] == '[' ? ']' : '}';
    if (depth == ADIEU_JSON_MAX_DEPTH) {
        return ref_fail(r, r->i);
    }
    r->i++;
    ref_ws(r);
    if (r->i < r->n && r->p[r->i] == close) {
        r->i++;
        return true;
    }
    for (;;) {
        if (close == '}') {
            ref_ws(r);
            if (r->i == r->n || r->p[r->i] != '"') {
                return ref_fail(r, r->i);
            }
            if (!ref_string(r)) {
                return false;
            }
            ref_ws(r);
            if (r->i == r->n || r->p[r->i] != ':') {
                return ref_fail(r, r->i);
            }
            r->i++;
        }
        if (!ref_value(r, depth + 1)) {
            return false;
        }
        ref_ws(r);
        if (r->i == r->n) {
            return ref_fail(r, r->n);
        }
        if (r->p[r->i] == close) {
            r->i++;
            return true;
        }
        if (r->p[r->i] != ',') {
            return ref_fail(r, r->i);
        }
        r->i++;
    }
}

static bool ref_value(ref_t *r, size_t depth)
{
    ref_ws(r);
    if (r->i == r->n) {
        return ref_fail(r, r->n);
    }
    uint8_t c = r->p[r->i];
    switch (c) {
    case '{':
    case '[':
        return ref_container(r, depth);
    case '"':
        return ref_string(r);
    case 't':
        return ref_literal(r, "true");
    case 'f':
        return ref_literal(r, "false");
    case 'n':
        return ref_literal(r, "null");
    default:
        if (c == '-' || ref_is_digit(c)) {
            return ref_number(r);
        }
        return ref_fail(r, r->i);
    }
}

/* True when p[0..n) is one JSON text; otherwise *at is the error offset. */
static bool ref_check(const uint8_t *p, size_t n, size_t *at)
{
    ref_t r = {p, n, 0, false};
    if (ref_value(&r, 0)) {
        ref_ws(&r);
        if (r.i == n) {
            return true;
        }
        ref_fail(&r, r.i);
    }
    *at = r.i;
    return false;
}

/* The input with the whitespace outside strings removed (for a valid text). */
static void strip(const uint8_t *p, size_t n, fuzz_bytes_t *out)
{
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_string) {
            fuzz_put_byte(out, c);
            if (c == '\\') {
                fuzz_put_byte(out, p[++i]);
            } else if (c == '"') {
                in_string = false;
            }
        } else if (!ref_is_ws(c)) {
            fuzz_put_byte(out, c);
            in_string = c == '"';
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * The harness
 * ------------------------------------------------------------------------------------- */

/* Minifies into a fresh buffer; returns the result code. */
static int minify_fresh(const uint8_t *p, size_t n, adieu_buf_t *out)
{
    adieu_buf_init(out);
    adieu_json_error_t err;
    return adieu_json_minify(p, n, out, &err);
}

static void check_idempotent(const uint8_t *min, size_t len)
{
    uint8_t *copy = fuzz_dup(min, len);
    adieu_buf_t again;
    FUZZ_ASSERT(minify_fresh(copy, len, &again) == 0);
    FUZZ_ASSERT(adieu_buf_size(&again) == len);
    FUZZ_ASSERT(len == 0 || memcmp(adieu_buf_head(&again), min, len) == 0);
    adieu_buf_free(&again);
    free(copy);
}

/* Whitespace around the value changes nothing. */
static void check_padded(const uint8_t *p, size_t n, const uint8_t *min, size_t len)
{
    uint8_t *padded = fuzz_alloc(n + 3);
    padded[0] = ' ';
    padded[1] = '\t';
    memcpy(padded + 2, p, n);
    padded[n + 2] = '\n';
    adieu_buf_t out;
    FUZZ_ASSERT(minify_fresh(padded, n + 3, &out) == 0);
    FUZZ_ASSERT(adieu_buf_size(&out) == len);
    FUZZ_ASSERT(len == 0 || memcmp(adieu_buf_head(&out), min, len) == 0);
    adieu_buf_free(&out);
    free(padded);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = fuzz_in(data, size);
    uint8_t cfg = fuzz_byte(&in);
    uint8_t *text = fuzz_dup(in.p, in.n);
    size_t n = in.n;

    /* What the buffer holds at entry: held bytes, of which the first `eaten` are consumed. */
    static const size_t held_sizes[4] = {0, 3, 64, 1000};
    size_t held = held_sizes[cfg & 3u];
    size_t eaten = held == 0 ? 0 : (size_t)((cfg >> 2) & 15u) % (held + 1);
    bool no_memory = (cfg & 0x40u) != 0;
    adieu_buf_t out;
    adieu_buf_init(&out);
    uint8_t *old = fuzz_alloc(held);
    for (size_t i = 0; i < held; i++) {
        old[i] = (uint8_t)(i * 7 + 1);
    }
    FUZZ_ASSERT(adieu_buf_append(&out, old, held) == 0);
    adieu_buf_consume(&out, eaten);
    size_t unread = held - eaten;

    size_t ref_at = 0;
    bool ref_ok = ref_check(text, n, &ref_at);
    adieu_json_error_t err = {SIZE_MAX, NULL};
    /* The output is never longer than the input, so only an input longer than the room the
     * buffer has (or a buffer without storage) needs an allocation. */
    bool must_allocate = n > 0 && (out.data == NULL || out.cap - unread < n);
    fuzz_alloc_budget(no_memory ? 0 : -1);
    int rc = adieu_json_minify(text, n, &out, (cfg & 0x80u) ? NULL : &err);
    fuzz_alloc_budget(-1);
    FUZZ_ASSERT((rc == ADIEU_ENOMEM) == (no_memory && must_allocate));
    if (rc == ADIEU_ENOMEM) {
        FUZZ_ASSERT(adieu_buf_size(&out) == unread);
        FUZZ_ASSERT(unread == 0 || memcmp(adieu_buf_head(&out), old + eaten, unread) == 0);
        adieu_buf_free(&out);
        free(old);
        free(text);
        return 0;
    }
    FUZZ_ASSERT(rc == 0 || rc == ADIEU_EPROTO);
    FUZZ_ASSERT((rc == 0) == ref_ok);
    FUZZ_ASSERT(adieu_buf_size(&out) >= unread);
    /* NOTE: adieu_buf_head() of a buffer that never allocated is NULL + 0: not called then. */
    const uint8_t *head = out.data != NULL ? adieu_buf_head(&out) : NULL;
    FUZZ_ASSERT(unread == 0 || memcmp(head, old + eaten, unread) == 0);
    size_t len = adieu_buf_size(&out) - unread;
    const uint8_t *min = head != NULL ? head + unread : NULL;
    if (rc == 0) {
        FUZZ_ASSERT(len <= n);
        fuzz_bytes_t expect = {NULL, 0, 0};
        strip(text, n, &expect);
        FUZZ_ASSERT(fuzz_bytes_eq(&expect, min, len));
        fuzz_bytes_free(&expect);
        check_idempotent(min, len);
        check_padded(text, n, min, len);
    } else {
        FUZZ_ASSERT(len == 0);
        if ((cfg & 0x80u) == 0) {
            FUZZ_ASSERT(err.detail != NULL && err.detail[0] != '\0');
            FUZZ_ASSERT(err.offset == ref_at);
        }
    }
    adieu_buf_free(&out);
    free(old);
    free(text);
    return 0;
}
