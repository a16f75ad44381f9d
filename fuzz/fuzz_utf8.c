/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for the UTF-8 validator (proto/utf8.h).
 *
 * Input: byte 0 picks where the text sits in memory (its low 3 bits: an offset from an
 * aligned allocation, so the word-at-a-time ASCII path sees every alignment); bytes 1-2
 * pick the chunking (fuzz.h); the rest is the text.
 *
 * Invariants:
 *   - two references agree with each other: a decoder that computes each code point and
 *     checks it (overlong, surrogate, over U+10FFFF), and the Table 3-7 walk of fuzz.h;
 *   - adieu_utf8_valid() agrees with them on every input;
 *   - fed in the chosen chunks, adieu_utf8_feed() fails exactly in the chunk that holds the
 *     first byte no valid text could continue with (fail fast), never before, and keeps
 *     failing after; adieu_utf8_complete() after each chunk says whether that prefix ends
 *     between characters; so every split agrees with the one-shot answer;
 *   - a zeroed validator is an initialised one, and an empty feed changes nothing.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/utf8.h"

#include "fuzz.h"

/* The first reference: decode each sequence to its code point, then judge the value. */
static bool decode_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len;
        uint32_t cp;
        uint32_t min;
        if ((c & 0x80u) == 0) {
            i++;
            continue;
        } else if ((c & 0xE0u) == 0xC0u) {
            len = 2;
            cp = c & 0x1Fu;
            min = 0x80;
        } else if ((c & 0xF0u) == 0xE0u) {
            len = 3;
            cp = c & 0x0Fu;
            min = 0x800;
        } else if ((c & 0xF8u) == 0xF0u) {
            len = 4;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0u) != 0x80u) {
                return false;
            }
            cp = cp << 6 | (p[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += len;
    }
    return true;
}

/* Marks in between[i] (i = 0..n) whether the first i bytes end between characters, up to
 * the first bad byte; returns that byte's index, or n. */
static size_t boundaries(const uint8_t *p, size_t n, bool *between)
{
    memset(between, 0, n + 1);
    bool open;
    size_t bad = fuzz_utf8_first_bad(p, n, &open);
    /* Every prefix that ends on a sequence start (before the first bad byte) is complete. */
    size_t i = 0;
    between[0] = true;
    while (i < bad) {
        uint8_t c = p[i];
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        i += len;
        if (i <= bad) {
            between[i] = true;
        }
    }
    return bad;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = fuzz_in(data, size);
    size_t shift = fuzz_byte(&in) & 7u;
    fuzz_split_t split = fuzz_split_read(&in);
    size_t n = in.n;

    /* The text at a chosen alignment, flush against the end of its allocation. */
    uint8_t *block = fuzz_alloc(shift + n);
    uint8_t *text = block + shift;
    if (n > 0) {
        memcpy(text, in.p, n);
    }

    bool open;
    size_t bad = fuzz_utf8_first_bad(text, n, &open);
    bool valid = bad == n && !open;
    FUZZ_ASSERT(decode_valid(text, n) == valid);
    FUZZ_ASSERT(adieu_utf8_valid(text, n) == valid);

    bool *between = fuzz_alloc(n + 1);
    FUZZ_ASSERT(boundaries(text, n, between) == bad);
    FUZZ_ASSERT(between[n] == valid);

    adieu_utf8_t zeroed;
    memset(&zeroed, 0, sizeof(zeroed));
    adieu_utf8_t v;
    adieu_utf8_init(&v);
    FUZZ_ASSERT(v.state == zeroed.state && adieu_utf8_complete(&v));
    bool failed = false;
    for (size_t off = 0; off < n;) {
        size_t clen = fuzz_split_next(&split, n - off);
        int rc = adieu_utf8_feed(&v, text + off, clen);
        off += clen;
        /* Fail fast: the chunk that holds the first bad byte fails, no earlier one. */
        bool expect_fail = bad < off;
        FUZZ_ASSERT(rc == (expect_fail ? ADIEU_EUTF8 : 0));
        FUZZ_ASSERT(adieu_utf8_complete(&v) == (!expect_fail && between[off]));
        failed = expect_fail;
        adieu_utf8_t before = v;
        FUZZ_ASSERT(adieu_utf8_feed(&v, NULL, 0) == (failed ? ADIEU_EUTF8 : 0));
        FUZZ_ASSERT(v.state == before.state);
    }
    FUZZ_ASSERT(adieu_utf8_complete(&v) == valid);
    FUZZ_ASSERT(failed == (bad < n));

    free(between);
    free(block);
    return 0;
}
