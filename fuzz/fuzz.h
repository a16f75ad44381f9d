/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h: what the harnesses of fuzz/ share. Header-only, C11, no dependency.
 *
 * Every harness defines LLVMFuzzerTestOneInput(). Built with clang -fsanitize=fuzzer it is
 * driven by libFuzzer; built with any compiler and fuzz/replay.c it replays a corpus as a
 * ctest. An invariant that does not hold calls FUZZ_ASSERT's handler, which names the
 * condition and aborts, so libFuzzer saves the input and the replay test fails.
 *
 * The input is read through fuzz_in_t: a cursor that hands out bytes from the front and
 * zeros once it is exhausted, so a harness never reads past the input however short it is.
 * A harness reads its configuration (limits, how to split the stream) from the first bytes
 * and uses the rest as the stream or as a description of one.
 */
#ifndef ADIEU_FUZZ_FUZZ_H
#define ADIEU_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/alloc.h"

/* The libFuzzer entry point, defined by each harness and called by libFuzzer or replay.c. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline _Noreturn void fuzz__fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, cond);
    fflush(stderr);
    abort();
}

/* Checks an invariant; aborts with the condition and file:line when it does not hold. Never
 * compiled out (unlike assert). */
#define FUZZ_ASSERT(cond) ((cond) ? (void)0 : fuzz__fail(#cond, __FILE__, __LINE__))

/* ---------------------------------------------------------------------------------------
 * Reading the input
 * ------------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n; /* bytes left */
} fuzz_in_t;

static inline fuzz_in_t fuzz_in(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    return in;
}

/* The next byte, or 0 once the input is exhausted. */
static inline uint8_t fuzz_byte(fuzz_in_t *in)
{
    if (in->n == 0) {
        return 0;
    }
    in->n--;
    return *in->p++;
}

/* The next two bytes as a big-endian number (zeros past the end). */
static inline uint16_t fuzz_u16(fuzz_in_t *in)
{
    uint16_t hi = fuzz_byte(in);
    return (uint16_t)(hi << 8 | fuzz_byte(in));
}

/* The next eight bytes as a big-endian number (zeros past the end). */
static inline uint64_t fuzz_u64(fuzz_in_t *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | fuzz_byte(in);
    }
    return v;
}

/* Copies up to n bytes into out, padding with zeros past the end of the input. */
static inline void fuzz_bytes(fuzz_in_t *in, uint8_t *out, size_t n)
{
    size_t take = n < in->n ? n : in->n;
    if (take > 0) {
        memcpy(out, in->p, take);
    }
    if (n > take) {
        memset(out + take, 0, n - take);
    }
    in->p += take;
    in->n -= take;
}

/* ---------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------- */

/* malloc that aborts on failure: a harness cannot go on without its memory. */
static inline void *fuzz_alloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    if (p == NULL) {
        fuzz__fail("out of memory", __FILE__, __LINE__);
    }
    return p;
}

/* A heap copy of exactly n bytes (src may be NULL when n is 0): under AddressSanitizer a
 * read or write even one byte past it is reported at once. */
static inline uint8_t *fuzz_dup(const void *src, size_t n)
{
    uint8_t *p = fuzz_alloc(n);
    if (n > 0) {
        memcpy(p, src, n);
    }
    return p;
}

/* True when the n bytes at p lie inside the size bytes at base (an empty span anywhere in
 * it or at its end). */
static inline bool fuzz_inside(const void *p, size_t n, const void *base, size_t size)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t b = (uintptr_t)base;
    return base != NULL && p != NULL && a >= b && a - b <= size && n <= size - (a - b);
}

/* Allocation failure: adieu's allocator (adieu/alloc.h) can be made to fail every allocation
 * after a budget of successful ones, so that the ENOMEM paths are fuzzed too. */
static long fuzz__budget = -1;

static inline bool fuzz__spend(void)
{
    if (fuzz__budget == 0) {
        return false;
    }
    if (fuzz__budget > 0) {
        fuzz__budget--;
    }
    return true;
}

static inline void *fuzz__malloc(size_t n)
{
    return fuzz__spend() ? malloc(n) : NULL;
}

static inline void *fuzz__realloc(void *p, size_t n)
{
    return fuzz__spend() ? realloc(p, n) : NULL;
}

static inline void *fuzz__calloc(size_t count, size_t n)
{
    return fuzz__spend() ? calloc(count, n) : NULL;
}

/* From now on adieu's allocations succeed budget more times, then fail (budget < 0: they
 * never fail). Both allocators are the C library's underneath, so switching while adieu
 * holds memory is safe here. */
static inline void fuzz_alloc_budget(long budget)
{
    fuzz__budget = budget;
    FUZZ_ASSERT(adieu_replace_allocator(fuzz__malloc, fuzz__realloc, fuzz__calloc, free) == 0);
}

/* True while a budget is set: allocations may fail. */
static inline bool fuzz_alloc_may_fail(void)
{
    return fuzz__budget >= 0;
}

/* A byte string that grows as needed, for traces and built streams. */
typedef struct {
    uint8_t *b;
    size_t n;
    size_t cap;
} fuzz_bytes_t;

static inline void fuzz_put(fuzz_bytes_t *s, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    if (n > s->cap - s->n) {
        size_t cap = (s->n + n) * 2 + 64;
        uint8_t *b = realloc(s->b, cap);
        if (b == NULL) {
            fuzz__fail("out of memory", __FILE__, __LINE__);
        }
        s->b = b;
        s->cap = cap;
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static inline void fuzz_put_byte(fuzz_bytes_t *s, uint8_t c)
{
    fuzz_put(s, &c, 1);
}

static inline void fuzz_bytes_free(fuzz_bytes_t *s)
{
    free(s->b);
    s->b = NULL;
    s->n = 0;
    s->cap = 0;
}

static inline bool fuzz_bytes_eq(const fuzz_bytes_t *a, const void *b, size_t n)
{
    return a->n == n && (n == 0 || memcmp(a->b, b, n) == 0);
}

/* ---------------------------------------------------------------------------------------
 * Chunking: how a stream is cut into the pieces fed one call at a time
 * ------------------------------------------------------------------------------------- */

/* splitmix64: small and seedable, so every chunking can be replayed from the input. */
static inline uint64_t fuzz_random(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

typedef enum {
    FUZZ_SPLIT_WHOLE = 0, /* the whole stream in one call */
    FUZZ_SPLIT_BYTES,     /* one byte per call */
    FUZZ_SPLIT_FIXED,     /* chunks of a fixed size, 1..256 */
    FUZZ_SPLIT_RANDOM     /* chunks of seeded random sizes, mostly small */
} fuzz_split_mode_t;

typedef struct {
    fuzz_split_mode_t mode;
    size_t fixed;
    uint64_t rng;
} fuzz_split_t;

/* A chunking chosen by two bytes: a's low bits pick the mode, b the size or (with a) the
 * seed. */
static inline fuzz_split_t fuzz_split(uint8_t a, uint8_t b)
{
    fuzz_split_t s;
    s.mode = (fuzz_split_mode_t)(a & 3u);
    s.fixed = (size_t)b + 1;
    s.rng = (uint64_t)a << 8 | b;
    return s;
}

static inline fuzz_split_t fuzz_split_read(fuzz_in_t *in)
{
    uint8_t a = fuzz_byte(in);
    return fuzz_split(a, fuzz_byte(in));
}

/* The size of the next chunk when left bytes remain (left > 0): between 1 and left. */
static inline size_t fuzz_split_next(fuzz_split_t *s, size_t left)
{
    static const size_t scale[4] = {2, 7, 64, 1024};
    size_t len = left;
    switch (s->mode) {
    case FUZZ_SPLIT_WHOLE:
        break;
    case FUZZ_SPLIT_BYTES:
        len = 1;
        break;
    case FUZZ_SPLIT_FIXED:
        len = s->fixed;
        break;
    case FUZZ_SPLIT_RANDOM:
    default: {
        uint64_t r = fuzz_random(&s->rng);
        len = 1 + (size_t)((r >> 2) % scale[r & 3u]);
        break;
    }
    }
    return len < left ? len : left;
}

/* ---------------------------------------------------------------------------------------
 * A reference UTF-8 checker, independent of proto/utf8.c (which is a DFA over byte
 * classes): a plain walk over Unicode Table 3-7, one sequence at a time.
 * ------------------------------------------------------------------------------------- */

/* Returns the index of the first byte of p[0..n) that no well-formed text could continue
 * with, or n when there is none; *open is then true when the text ends inside a sequence. */
static inline size_t fuzz_utf8_first_bad(const uint8_t *p, size_t n, bool *open)
{
    *open = false;
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint8_t lo = 0x80;
        uint8_t hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return i;
        }
        for (size_t k = 1; k <= more; k++) {
            if (i + k == n) {
                *open = true;
                return n;
            }
            if (p[i + k] < lo || p[i + k] > hi) {
                return i + k;
            }
            lo = 0x80;
            hi = 0xBF;
        }
        i += more + 1;
    }
    return n;
}

/* True when p[0..n) is complete, well-formed UTF-8 by the reference. */
static inline bool fuzz_utf8_valid(const uint8_t *p, size_t n)
{
    bool open;
    return fuzz_utf8_first_bad(p, n, &open) == n && !open;
}

/* Writes the UTF-8 encoding of the scalar value cp (not a surrogate, at most U+10FFFF) into
 * out and returns its length, 1 to 4. */
static inline size_t fuzz_utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Appends valid UTF-8 text made from the next n input bytes: each byte is kept when ASCII,
 * otherwise it and the next byte choose a scalar value of 2, 3 or 4 bytes, boundaries and
 * the neighbours of the surrogates included, so multi-byte sequences are common. */
static inline void fuzz_put_text(fuzz_bytes_t *s, fuzz_in_t *in, size_t n)
{
    static const uint32_t bases[8] = {0x80,   0x7FF,  0x800,   0xD7FF,
                                      0xE000, 0xFFFF, 0x10000, 0x10FFFF};
    for (size_t i = 0; i < n && in->n > 0; i++) {
        uint8_t c = fuzz_byte(in);
        if (c < 0x80) {
            fuzz_put_byte(s, c);
            continue;
        }
        uint32_t base = bases[c & 7u];
        uint32_t delta = fuzz_byte(in) % 0x80u;
        /* Down from the bases that end a range (odd indices), up from those that start one,
         * so cp keeps the length of its base's encoding. */
        uint32_t cp = (c & 1u) ? base - delta : base + delta;
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            cp = 0xD7FF;
        }
        if (cp > 0x10FFFF) {
            cp = 0x10FFFF;
        }
        uint8_t buf[4];
        fuzz_put(s, buf, fuzz_utf8_encode(cp, buf));
    }
}

#endif /* ADIEU_FUZZ_FUZZ_H */
