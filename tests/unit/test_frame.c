/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/frame.c, the framed protocol codec (SPEC P1).
 *
 * The core property: a stream of mixed messages parses to exactly the same messages however it
 * is split: all at once, one byte at a time, at every offset, at every pair of offsets, and at
 * thousands of seeded random offsets. Every chunk is fed from memory flush against a guard
 * page, so a read past the caller's input faults. Each delivered message is also checked to
 * come from the right place: a payload wholly inside one input must be handed out in place
 * (zero-copy), a split one from the parser's body buffer.
 *
 * The targeted scenarios after that are named <area>_<case>: prefix_*, zero_length_*,
 * max_length_*, over_max_*, truncated_*, eof_*, body_*, failed_*.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/adieu.h"
#include "proto/frame.h"

#include "check.h"

/* The storage the parser may keep between messages (frame.c's BODY_KEEP). */
#define BODY_KEEP ((size_t)64 * 1024)
#define MIB ((size_t)1024 * 1024)

/* splitmix64: a small, seedable generator, so every random run can be replayed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------------------------------
 * Streams of many messages, and the harness that feeds them in chunks
 * ------------------------------------------------------------------------------------- */

typedef struct {
    unsigned prefix_bytes;
    size_t count;   /* messages */
    size_t *lens;   /* payload length of each message */
    size_t *starts; /* offset of each payload in bytes */
    uint8_t *bytes; /* the encoded stream */
    size_t n;       /* its length */
    uint8_t *guard; /* n bytes before a guard page: each chunk is copied flush against it */
} stream_t;

/* Encodes count messages of the given lengths plus extra ones of random lengths up to
 * extra_max. Payload bytes are random, so a message delivered out of order or mixed with
 * another does not compare equal. */
static stream_t stream_make(unsigned prefix_bytes, const size_t *lens, size_t count, size_t extra,
                            size_t extra_max, uint64_t seed)
{
    stream_t s = {.prefix_bytes = prefix_bytes, .count = count + extra};
    s.lens = calloc(s.count, sizeof(size_t));
    s.starts = calloc(s.count, sizeof(size_t));
    if (s.lens == NULL || s.starts == NULL) {
        abort();
    }
    uint64_t rng = seed;
    for (size_t i = 0; i < s.count; i++) {
        s.lens[i] = i < count ? lens[i] : (size_t)(next_random(&rng) % (extra_max + 1));
        s.n += prefix_bytes + s.lens[i];
    }
    s.bytes = malloc(s.n);
    if (s.bytes == NULL) {
        abort();
    }
    size_t off = 0;
    for (size_t i = 0; i < s.count; i++) {
        CHECK_EQ(adieu_frame_prefix(s.bytes + off, prefix_bytes, s.lens[i]), prefix_bytes);
        off += prefix_bytes;
        s.starts[i] = off;
        for (size_t k = 0; k < s.lens[i]; k++) {
            s.bytes[off + k] = (uint8_t)next_random(&rng);
        }
        off += s.lens[i];
    }
    s.guard = guard_copy(s.bytes, s.n);
    return s;
}

static void stream_free(stream_t *s)
{
    guard_free(s->guard, s->n);
    free(s->bytes);
    free(s->starts);
    free(s->lens);
}

/* Where the frame of message i (its prefix) starts; the stream length for i == count. */
static size_t frame_start(const stream_t *s, size_t i)
{
    return i < s->count ? s->starts[i] - s->prefix_bytes : s->n;
}

typedef enum {
    SPLIT_WHOLE,  /* one chunk */
    SPLIT_BYTES,  /* one byte per chunk */
    SPLIT_CUTS,   /* new chunks start at cut[0] and cut[1] */
    SPLIT_RANDOM, /* random lengths from tiny to large */
} split_kind_t;

typedef struct {
    split_kind_t kind;
    size_t cut[2];
    uint64_t rng;
} splitter_t;

/* The length of the chunk starting at off, at least 1, at most left. */
static size_t chunk_len(splitter_t *sp, size_t off, size_t left)
{
    size_t len = left;
    switch (sp->kind) {
    case SPLIT_WHOLE:
        break;
    case SPLIT_BYTES:
        len = 1;
        break;
    case SPLIT_CUTS:
        for (int i = 0; i < 2; i++) {
            if (sp->cut[i] > off && sp->cut[i] - off < len) {
                len = sp->cut[i] - off;
            }
        }
        break;
    case SPLIT_RANDOM: {
        /* Mix the scales, so that cuts land inside prefixes, inside payloads and between
         * messages, and some chunks hold many whole messages. */
        static const size_t scale[] = {4, 64, 4096, 131072};
        uint64_t r = next_random(&sp->rng);
        len = 1 + (size_t)((r >> 2) % scale[r & 3]);
        break;
    }
    }
    return len < left ? len : left;
}

typedef struct {
    size_t zero_copy; /* non-empty payloads handed out in place */
    size_t copied;    /* non-empty payloads assembled in the body buffer */
    size_t empty;
} run_stats_t;

typedef struct {
    const stream_t *s;
    adieu_frame_parser_t p;
    size_t next;               /* index of the next message expected */
    size_t ended;              /* messages whose frame ends at or before the fed offset */
    const uint8_t *assembling; /* body storage of the payload being assembled, if any */
    run_stats_t stats;
} run_t;

/* Checks a delivered message against the stream: its bytes, and where they are. The chunk
 * being fed starts at offset off of the stream and is at in. */
static bool check_message(run_t *r, const adieu_frame_msg_t *msg, const uint8_t *in, size_t off,
                          size_t clen)
{
    const stream_t *s = r->s;
    if (!CHECK(r->next < s->count)) {
        return false;
    }
    size_t i = r->next++;
    size_t start = s->starts[i];
    size_t n = s->lens[i];
    bool ok = CHECK_EQ(msg->len, n) && CHECK_MEM_EQ(msg->data, s->bytes + start, n);
    if (n == 0) {
        r->stats.empty++;
    } else if (start >= off && start + n <= off + clen) {
        ok = CHECK(msg->data == in + (start - off)) && ok;
        r->stats.zero_copy++;
    } else {
        uintptr_t d = (uintptr_t)msg->data;
        uintptr_t b = (uintptr_t)r->p.body.data;
        ok = CHECK(b != 0 && d >= b && d + n <= b + r->p.body.cap) && ok;
        r->stats.copied++;
    }
    r->assembling = NULL;
    return ok;
}

/* While a split payload is assembled, its storage never outgrows what arrived by more than
 * the storage kept between messages (or twice what arrived); a payload that fits that storage
 * is reserved once for its whole declared length and never moves. */
static bool check_assembly(run_t *r)
{
    if (r->p.state != ADIEU__FRAME_PAYLOAD || adieu_buf_size(&r->p.body) == 0) {
        return true;
    }
    size_t got = adieu_buf_size(&r->p.body);
    if (r->p.len > BODY_KEEP) {
        return CHECK(r->p.body.cap <= 2 * got || r->p.body.cap <= BODY_KEEP);
    }
    if (r->assembling == NULL) {
        r->assembling = r->p.body.data;
    }
    return CHECK(r->p.body.data == r->assembling) && CHECK(r->p.body.cap >= r->p.len);
}

/* Feeds the chunk [off, off + clen) of the stream from a guarded copy, calling the parser
 * until it has consumed the whole chunk. */
static bool feed_chunk(run_t *r, size_t off, size_t clen)
{
    uint8_t *in = r->s->guard + r->s->n - clen;
    memcpy(in, r->s->bytes + off, clen);
    size_t pos = 0;
    for (;;) {
        size_t used = SIZE_MAX;
        adieu_frame_msg_t msg = {0};
        int rc = adieu_frame_parse(&r->p, in + pos, clen - pos, &used, &msg);
        if (!CHECK(used <= clen - pos)) {
            return false;
        }
        pos += used;
        if (rc == 0) {
            return CHECK_EQ(pos, clen) && check_assembly(r);
        }
        /* A message must consume something, or a caller looping on 1 would never end. */
        if (!CHECK_EQ(rc, 1) || !CHECK(used > 0) || !check_message(r, &msg, in, off, clen)) {
            return false;
        }
    }
}

/* After a chunk ending at off: every message whose frame ended is delivered, and the parser
 * is idle, its body buffer empty and small, exactly when off is a message boundary. */
static bool check_boundary(run_t *r, size_t off)
{
    const stream_t *s = r->s;
    while (r->ended < s->count && s->starts[r->ended] + s->lens[r->ended] <= off) {
        r->ended++;
    }
    bool boundary = off == frame_start(s, r->ended);
    bool ok = CHECK_EQ(r->next, r->ended);
    ok = CHECK_EQ(adieu_frame_parser_idle(&r->p), boundary) && ok;
    ok = CHECK_EQ(adieu_frame_parser_eof(&r->p), boundary ? 0 : ADIEU_ETRUNCATED) && ok;
    if (boundary) {
        ok = CHECK_EQ(adieu_buf_size(&r->p.body), 0) && CHECK(r->p.body.cap <= BODY_KEEP) && ok;
    }
    return ok;
}

/* Parses the whole stream split as sp says; adds to *stats. */
static bool run_stream(const stream_t *s, splitter_t *sp, run_stats_t *stats)
{
    run_t r = {.s = s};
    adieu_frame_parser_init(&r.p, s->prefix_bytes, 16 * MIB);
    bool ok = true;
    for (size_t off = 0; ok && off < s->n;) {
        size_t clen = chunk_len(sp, off, s->n - off);
        ok = feed_chunk(&r, off, clen) && check_boundary(&r, off + clen);
        off += clen;
    }
    ok = ok && CHECK_EQ(r.next, s->count) && CHECK(adieu_frame_parser_idle(&r.p));
    adieu_frame_parser_free(&r.p);
    stats->zero_copy += r.stats.zero_copy;
    stats->copied += r.stats.copied;
    stats->empty += r.stats.empty;
    return ok;
}

/* Non-empty messages of the stream whose length is in [lo, hi]. */
static size_t count_lens(const stream_t *s, size_t lo, size_t hi)
{
    size_t k = 0;
    for (size_t i = 0; i < s->count; i++) {
        k += s->lens[i] >= lo && s->lens[i] <= hi;
    }
    return k;
}

/* Many kinds of message: empty ones, in a row too; one byte; lengths around the byte
 * boundaries; the 2-byte maximum; and for 4-byte prefixes lengths past it, one larger than the
 * storage the parser keeps (BODY_KEEP) and one of a MiB. */
static const size_t mixed2[] = {0, 1, 2,     0,    0, 3,     127, 128, 255, 256, 1000,  65535,
                                1, 0, 65534, 4096, 7, 65535, 0,   300, 1,   0,   65535, 0};
static const size_t mixed4[] = {0, 1,   65535,  65536, 65537, 0, 2,     200000, 1,
                                0, 300, 131072, 5,     MIB,   0, 70000, 3};
/* Shorter streams for the exhaustive splits. */
static const size_t short_lens[] = {0, 1, 2, 0, 3, 200, 0, 1, 300, 0, 700, 4, 0};
static const size_t tiny_lens[] = {0, 1, 0, 2, 3, 0, 5};

static stream_t mixed_stream(unsigned prefix_bytes)
{
    if (prefix_bytes == 2) {
        return stream_make(2, mixed2, sizeof(mixed2) / sizeof(mixed2[0]), 40, 2000, 2);
    }
    return stream_make(4, mixed4, sizeof(mixed4) / sizeof(mixed4[0]), 40, 2000, 4);
}

/* ---------------------------------------------------------------------------------------
 * Splits
 * ------------------------------------------------------------------------------------- */

static void all_at_once(unsigned prefix_bytes)
{
    stream_t s = mixed_stream(prefix_bytes);
    splitter_t sp = {.kind = SPLIT_WHOLE};
    run_stats_t st = {0};
    CHECK(run_stream(&s, &sp, &st));
    /* One input holds every payload: all of them must be handed out in place. */
    CHECK_EQ(st.zero_copy, count_lens(&s, 1, SIZE_MAX));
    CHECK_EQ(st.copied, 0);
    CHECK_EQ(st.empty, count_lens(&s, 0, 0));
    stream_free(&s);
}

static void parse_all_at_once_2(void)
{
    all_at_once(2);
}

static void parse_all_at_once_4(void)
{
    all_at_once(4);
}

static void one_byte_at_a_time(unsigned prefix_bytes)
{
    stream_t s = mixed_stream(prefix_bytes);
    splitter_t sp = {.kind = SPLIT_BYTES};
    run_stats_t st = {0};
    CHECK(run_stream(&s, &sp, &st));
    /* A one-byte payload still arrives whole in its own input; every longer one is split. */
    CHECK_EQ(st.zero_copy, count_lens(&s, 1, 1));
    CHECK_EQ(st.copied, count_lens(&s, 2, SIZE_MAX));
    stream_free(&s);
}

static void parse_one_byte_at_a_time_2(void)
{
    one_byte_at_a_time(2);
}

static void parse_one_byte_at_a_time_4(void)
{
    one_byte_at_a_time(4);
}

static void every_split_offset(unsigned prefix_bytes)
{
    stream_t s =
        stream_make(prefix_bytes, short_lens, sizeof(short_lens) / sizeof(short_lens[0]), 0, 0, 7);
    run_stats_t st = {0};
    for (size_t k = 1; k < s.n; k++) {
        splitter_t sp = {.kind = SPLIT_CUTS, .cut = {k, k}};
        if (!run_stream(&s, &sp, &st)) {
            fprintf(stderr, "every_split_offset: prefix %u, split at %zu\n", prefix_bytes, k);
            break;
        }
    }
    CHECK(st.zero_copy > 0 && st.copied > 0);
    stream_free(&s);
}

static void parse_every_split_offset_2(void)
{
    every_split_offset(2);
}

static void parse_every_split_offset_4(void)
{
    every_split_offset(4);
}

static void every_two_splits(unsigned prefix_bytes)
{
    stream_t s =
        stream_make(prefix_bytes, tiny_lens, sizeof(tiny_lens) / sizeof(tiny_lens[0]), 0, 0, 9);
    run_stats_t st = {0};
    bool ok = true;
    for (size_t a = 1; ok && a < s.n; a++) {
        for (size_t b = a + 1; ok && b < s.n; b++) {
            splitter_t sp = {.kind = SPLIT_CUTS, .cut = {a, b}};
            ok = run_stream(&s, &sp, &st);
            if (!ok) {
                fprintf(stderr, "every_two_splits: prefix %u, splits at %zu %zu\n", prefix_bytes, a,
                        b);
            }
        }
    }
    CHECK(st.zero_copy > 0 && st.copied > 0);
    stream_free(&s);
}

static void parse_every_two_splits_2(void)
{
    every_two_splits(2);
}

static void parse_every_two_splits_4(void)
{
    every_two_splits(4);
}

static void random_splits(unsigned prefix_bytes, const size_t *lens, size_t count, int runs)
{
    stream_t s = stream_make(prefix_bytes, lens, count, 30, 600, 11);
    run_stats_t st = {0};
    for (int seed = 1; seed <= runs; seed++) {
        splitter_t sp = {.kind = SPLIT_RANDOM, .rng = (uint64_t)seed};
        if (!run_stream(&s, &sp, &st)) {
            fprintf(stderr, "random_splits: prefix %u, seed %d\n", prefix_bytes, seed);
            break;
        }
    }
    CHECK(st.zero_copy > 0 && st.copied > 0);
    stream_free(&s);
}

static void parse_random_splits_2(void)
{
    static const size_t lens[] = {0, 1, 2, 0, 3, 100, 1000, 65535, 0, 1, 4000, 5, 0};
    random_splits(2, lens, sizeof(lens) / sizeof(lens[0]), 2000);
}

static void parse_random_splits_4(void)
{
    static const size_t lens[] = {0, 1, 65535, 65536, 70000, 0, 3, 1000, 2, 0};
    random_splits(4, lens, sizeof(lens) / sizeof(lens[0]), 500);
}

/* ---------------------------------------------------------------------------------------
 * Targeted scenarios
 * ------------------------------------------------------------------------------------- */

/* A guarded copy of an input, kept mapped while messages pointing into it are checked. */
typedef struct {
    uint8_t *at;
    size_t n;
} input_t;

static input_t input_make(const void *bytes, size_t n)
{
    input_t in = {guard_copy(bytes, n), n};
    return in;
}

static void input_free(input_t *in)
{
    guard_free(in->at, in->n);
}

/* A frame with a payload of n bytes of value fill; returns its length. */
static size_t frame_make(uint8_t *out, unsigned prefix_bytes, size_t n, uint8_t fill)
{
    CHECK_EQ(adieu_frame_prefix(out, prefix_bytes, n), prefix_bytes);
    memset(out + prefix_bytes, fill, n);
    return prefix_bytes + n;
}

/* The message has n bytes, all of them value. Its data is read only when its length is right,
 * so that a wrong message fails the check instead of reading past its end. */
static bool msg_is(const adieu_frame_msg_t *msg, size_t n, uint8_t value)
{
    if (msg->len != n || (n > 0 && msg->data == NULL)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (msg->data[i] != value) {
            return false;
        }
    }
    return true;
}

static void prefix_encode_2(void)
{
    uint8_t out[4] = {0xaa, 0xaa, 0xaa, 0xaa};
    CHECK_EQ(adieu_frame_prefix(out, 2, 0), 2);
    CHECK_MEM_EQ(out, "\x00\x00\xaa\xaa", 4);
    CHECK_EQ(adieu_frame_prefix(out, 2, 0x0102), 2);
    CHECK_MEM_EQ(out, "\x01\x02", 2);
    CHECK_EQ(adieu_frame_prefix(out, 2, 65535), 2);
    CHECK_MEM_EQ(out, "\xff\xff", 2);
    /* Too big for two bytes: refused, and out left alone. */
    CHECK_EQ(adieu_frame_prefix(out, 2, 65536), ADIEU_ETOOBIG);
    CHECK_MEM_EQ(out, "\xff\xff\xaa\xaa", 4);
}

static void prefix_encode_4(void)
{
    uint8_t out[4] = {0};
    CHECK_EQ(adieu_frame_prefix(out, 4, 0x01020304), 4);
    CHECK_MEM_EQ(out, "\x01\x02\x03\x04", 4);
    CHECK_EQ(adieu_frame_prefix(out, 4, 65536), 4);
    CHECK_MEM_EQ(out, "\x00\x01\x00\x00", 4);
    CHECK_EQ(adieu_frame_prefix(out, 4, UINT32_MAX), 4);
    CHECK_MEM_EQ(out, "\xff\xff\xff\xff", 4);
    if (SIZE_MAX > UINT32_MAX) {
        memset(out, 0xaa, sizeof(out));
        CHECK_EQ(adieu_frame_prefix(out, 4, (size_t)((uint64_t)UINT32_MAX + 1)), ADIEU_ETOOBIG);
        CHECK_MEM_EQ(out, "\xaa\xaa\xaa\xaa", 4);
    }
}

static void init_caps_max_message(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 16 * MIB);
    CHECK_EQ(p.max_message, 65535);
    CHECK_EQ(p.state, ADIEU__FRAME_PREFIX);
    CHECK_EQ(p.need, 2);
    CHECK(adieu_frame_parser_idle(&p));
    CHECK_EQ(adieu_frame_parser_eof(&p), 0);
    CHECK(p.body.data == NULL);
    adieu_frame_parser_init(&p, 2, 100);
    CHECK_EQ(p.max_message, 100);
    adieu_frame_parser_init(&p, 2, 65535);
    CHECK_EQ(p.max_message, 65535);
    adieu_frame_parser_init(&p, 4, 16 * MIB);
    CHECK_EQ(p.max_message, 16 * MIB);
    CHECK_EQ(p.need, 4);
    adieu_frame_parser_init(&p, 4, SIZE_MAX);
    CHECK_EQ(p.max_message, UINT32_MAX);
    adieu_frame_parser_free(&p);
}

/* Literal bytes, not built with adieu_frame_prefix(), pin the byte order on the parse side:
 * 0x01 0x00 is 256 in network order. */
static void literal_vector(unsigned prefix_bytes)
{
    uint8_t bytes[3 * 4 + 3 + 256];
    uint8_t *w = bytes;
    for (unsigned i = 0; i < prefix_bytes - 1; i++) {
        *w++ = 0;
    }
    *w++ = 3;
    memcpy(w, "abc", 3);
    w += 3;
    memset(w, 0, prefix_bytes);
    w += prefix_bytes;
    memset(w, 0, prefix_bytes);
    w[prefix_bytes - 2] = 1;
    w += prefix_bytes;
    memset(w, 'q', 256);
    w += 256;
    size_t n = (size_t)(w - bytes);
    input_t in = input_make(bytes, n);
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, prefix_bytes, 1000);
    adieu_frame_msg_t msg = {0};
    size_t used;
    size_t pos = 0;
    CHECK_EQ(adieu_frame_parse(&p, in.at, n, &used, &msg), 1);
    CHECK_EQ(used, prefix_bytes + 3);
    CHECK(msg.len == 3 && memcmp(msg.data, "abc", 3) == 0);
    pos += used;
    CHECK_EQ(adieu_frame_parse(&p, in.at + pos, n - pos, &used, &msg), 1);
    CHECK_EQ(used, prefix_bytes);
    CHECK_EQ(msg.len, 0);
    pos += used;
    CHECK_EQ(adieu_frame_parse(&p, in.at + pos, n - pos, &used, &msg), 1);
    CHECK_EQ(used, prefix_bytes + 256);
    CHECK(msg_is(&msg, 256, 'q'));
    pos += used;
    CHECK_EQ(adieu_frame_parse(&p, in.at + pos, n - pos, &used, &msg), 0);
    CHECK_EQ(used, 0);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void parse_literal_vector_2(void)
{
    literal_vector(2);
}

static void parse_literal_vector_4(void)
{
    literal_vector(4);
}

static void parse_empty_input(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 100);
    adieu_frame_msg_t msg = {0};
    size_t used = 99;
    CHECK_EQ(adieu_frame_parse(&p, NULL, 0, &used, &msg), 0);
    CHECK_EQ(used, 0);
    CHECK(adieu_frame_parser_idle(&p));
    /* Inside a payload, an empty input changes nothing either. */
    input_t in = input_make("\x00\x05xy", 4);
    CHECK_EQ(adieu_frame_parse(&p, in.at, 4, &used, &msg), 0);
    CHECK_EQ(used, 4);
    CHECK_EQ(adieu_frame_parse(&p, NULL, 0, &used, &msg), 0);
    CHECK_EQ(used, 0);
    CHECK_EQ(p.need, 3);
    input_free(&in);
    input_t rest = input_make("zzz", 3);
    CHECK_EQ(adieu_frame_parse(&p, rest.at, 3, &used, &msg), 1);
    CHECK(msg.len == 5 && memcmp(msg.data, "xyzzz", 5) == 0);
    input_free(&rest);
    adieu_frame_parser_free(&p);
}

static void parse_one_message_per_call(void)
{
    uint8_t bytes[64];
    size_t n = frame_make(bytes, 2, 10, 'a');
    n += frame_make(bytes + n, 2, 20, 'b');
    input_t in = input_make(bytes, n);
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 100);
    adieu_frame_msg_t msg = {0};
    size_t used;
    CHECK_EQ(adieu_frame_parse(&p, in.at, n, &used, &msg), 1);
    CHECK_EQ(used, 12);
    CHECK(msg_is(&msg, 10, 'a'));
    CHECK_EQ(adieu_frame_parse(&p, in.at + 12, n - 12, &used, &msg), 1);
    CHECK_EQ(used, 22);
    CHECK(msg_is(&msg, 20, 'b'));
    CHECK_EQ(adieu_frame_parse(&p, in.at + n, 0, &used, &msg), 0);
    CHECK_EQ(used, 0);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void zero_length(unsigned prefix_bytes)
{
    uint8_t zeros[12] = {0};
    size_t n = 3 * prefix_bytes;
    input_t in = input_make(zeros, n);
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, prefix_bytes, 100);
    adieu_frame_msg_t msg = {0};
    size_t used;
    for (size_t pos = 0; pos < n; pos += used) {
        msg.len = 99;
        CHECK_EQ(adieu_frame_parse(&p, in.at + pos, n - pos, &used, &msg), 1);
        CHECK_EQ(used, prefix_bytes);
        CHECK_EQ(msg.len, 0);
        CHECK(msg.data != NULL);
        CHECK(adieu_frame_parser_idle(&p));
    }
    CHECK_EQ(adieu_frame_parse(&p, in.at + n, 0, &used, &msg), 0);
    /* An empty message never touches the body buffer. */
    CHECK(p.body.data == NULL);
    /* An empty message whose prefix ends an input is delivered by that call. */
    CHECK_EQ(adieu_frame_parse(&p, in.at, 1, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parse(&p, in.at + n - (prefix_bytes - 1), prefix_bytes - 1, &used, &msg),
             1);
    CHECK_EQ(used, prefix_bytes - 1);
    CHECK_EQ(msg.len, 0);
    CHECK_EQ(adieu_frame_parser_eof(&p), 0);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void zero_length_2(void)
{
    zero_length(2);
}

static void zero_length_4(void)
{
    zero_length(4);
}

/* A message of exactly max_message bytes is accepted whole and split; one byte more is not. */
static void max_length(unsigned prefix_bytes, size_t max_message, size_t max)
{
    uint8_t *bytes = malloc(4 + max);
    if (!CHECK(bytes != NULL)) {
        return;
    }
    size_t n = frame_make(bytes, prefix_bytes, max, 0x5a);
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, prefix_bytes, max_message);
    adieu_frame_msg_t msg = {0};
    size_t used;
    input_t whole = input_make(bytes, n);
    CHECK_EQ(adieu_frame_parse(&p, whole.at, n, &used, &msg), 1);
    CHECK(used == n && msg.len == max && msg.data == whole.at + prefix_bytes);
    input_free(&whole);
    input_t head = input_make(bytes, n / 2);
    input_t tail = input_make(bytes + n / 2, n - n / 2);
    CHECK_EQ(adieu_frame_parse(&p, head.at, n / 2, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parse(&p, tail.at, n - n / 2, &used, &msg), 1);
    CHECK(msg_is(&msg, max, 0x5a));
    input_free(&head);
    input_free(&tail);
    if (prefix_bytes == 4 || max < 65535) {
        CHECK_EQ(adieu_frame_prefix(bytes, prefix_bytes, max + 1), prefix_bytes);
        input_t over = input_make(bytes, prefix_bytes);
        CHECK_EQ(adieu_frame_parse(&p, over.at, prefix_bytes, &used, &msg), ADIEU_ETOOBIG);
        input_free(&over);
    }
    adieu_frame_parser_free(&p);
    free(bytes);
}

static void max_length_2(void)
{
    /* Whatever max_message says, 65535 is the 2-byte maximum, and it is accepted. */
    max_length(2, SIZE_MAX, 65535);
    max_length(2, 16 * MIB, 65535);
    max_length(2, 1000, 1000);
}

static void max_length_4(void)
{
    max_length(4, 100000, 100000);
    max_length(4, 70000, 70000);
}

static void max_message_zero(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 0);
    input_t in = input_make("\x00\x00\x00\x01x", 5);
    adieu_frame_msg_t msg = {0};
    size_t used;
    CHECK_EQ(adieu_frame_parse(&p, in.at, 5, &used, &msg), 1);
    CHECK_EQ(msg.len, 0);
    CHECK_EQ(adieu_frame_parse(&p, in.at + 2, 3, &used, &msg), ADIEU_ETOOBIG);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void over_max_declared(void)
{
    /* A 4 GiB declaration is refused from the prefix alone: nothing is reserved or copied. */
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 4, 16 * MIB);
    input_t in = input_make("\xff\xff\xff\xffqrstuvwxyz", 14);
    adieu_frame_msg_t msg = {0};
    size_t used = 99;
    CHECK_EQ(adieu_frame_parse(&p, in.at, 14, &used, &msg), ADIEU_ETOOBIG);
    CHECK_EQ(used, 4);
    CHECK_EQ(p.state, ADIEU__FRAME_FAILED);
    CHECK(p.body.data == NULL && p.body.cap == 0);
    adieu_frame_parser_free(&p);
    input_free(&in);

    adieu_frame_parser_init(&p, 2, 10);
    input_t small = input_make("\x00\x0bqrstuvwxyzq", 13);
    CHECK_EQ(adieu_frame_parse(&p, small.at, 13, &used, &msg), ADIEU_ETOOBIG);
    CHECK_EQ(used, 2);
    CHECK(p.body.data == NULL);
    adieu_frame_parser_free(&p);
    input_free(&small);
}

static void over_max_after_messages(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 100);
    input_t in = input_make("\x00\x01z\x00\x00\x00\xc8zz", 9);
    adieu_frame_msg_t msg = {0};
    size_t used;
    CHECK_EQ(adieu_frame_parse(&p, in.at, 9, &used, &msg), 1);
    CHECK(used == 3 && msg.len == 1 && msg.data[0] == 'z');
    CHECK_EQ(adieu_frame_parse(&p, in.at + 3, 6, &used, &msg), 1);
    CHECK(used == 2 && msg.len == 0);
    CHECK_EQ(adieu_frame_parse(&p, in.at + 5, 4, &used, &msg), ADIEU_ETOOBIG);
    CHECK_EQ(used, 2);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void over_max_prefix_split(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 4, 1000);
    /* 0x000003e9 = 1001, one byte at a time: refused when its last byte arrives. */
    input_t in = input_make("\x00\x00\x03\xe9", 4);
    adieu_frame_msg_t msg = {0};
    size_t used;
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(adieu_frame_parse(&p, in.at + i, 1, &used, &msg), 0);
        CHECK_EQ(used, 1);
    }
    CHECK_EQ(adieu_frame_parse(&p, in.at + 3, 1, &used, &msg), ADIEU_ETOOBIG);
    CHECK_EQ(used, 1);
    CHECK(p.body.data == NULL);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void failed_is_terminal(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 10);
    input_t bad = input_make("\x00\x0b", 2);
    input_t good = input_make("\x00\x01z", 3);
    adieu_frame_msg_t msg = {0};
    size_t used;
    CHECK_EQ(adieu_frame_parse(&p, bad.at, 2, &used, &msg), ADIEU_ETOOBIG);
    /* From now on every input is refused, valid or not, and none of it is consumed. */
    used = 99;
    CHECK_EQ(adieu_frame_parse(&p, good.at, 3, &used, &msg), ADIEU_EINVALID_STATE);
    CHECK_EQ(used, 0);
    CHECK_EQ(adieu_frame_parse(&p, NULL, 0, &used, &msg), ADIEU_EINVALID_STATE);
    CHECK_EQ(adieu_frame_parse(&p, bad.at, 2, &used, &msg), ADIEU_EINVALID_STATE);
    CHECK(!adieu_frame_parser_idle(&p));
    CHECK_EQ(adieu_frame_parser_eof(&p), ADIEU_EINVALID_STATE);
    adieu_frame_parser_free(&p);
    CHECK_EQ(adieu_frame_parse(&p, good.at, 3, &used, &msg), ADIEU_EINVALID_STATE);
    input_free(&bad);
    input_free(&good);
}

static void prefix_split(unsigned prefix_bytes)
{
    uint8_t bytes[4 + 50];
    size_t n = frame_make(bytes, prefix_bytes, 50, 'p');
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, prefix_bytes, 100);
    adieu_frame_msg_t msg = {0};
    size_t used;
    for (unsigned i = 0; i < prefix_bytes; i++) {
        input_t one = input_make(bytes + i, 1);
        CHECK_EQ(adieu_frame_parse(&p, one.at, 1, &used, &msg), 0);
        CHECK_EQ(used, 1);
        CHECK(!adieu_frame_parser_idle(&p));
        CHECK_EQ(adieu_frame_parser_eof(&p), ADIEU_ETRUNCATED);
        input_free(&one);
    }
    CHECK_EQ(p.state, ADIEU__FRAME_PAYLOAD);
    /* The payload then arrives whole in its own input, so it is handed out in place. */
    input_t payload = input_make(bytes + prefix_bytes, 50);
    CHECK_EQ(adieu_frame_parse(&p, payload.at, 50, &used, &msg), 1);
    CHECK(used == 50 && msg.data == payload.at && msg_is(&msg, 50, 'p'));
    CHECK(p.body.data == NULL);
    input_free(&payload);
    /* A prefix split with its payload in the second piece: in place too. */
    input_t first = input_make(bytes, 1);
    input_t rest = input_make(bytes + 1, n - 1);
    CHECK_EQ(adieu_frame_parse(&p, first.at, 1, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parse(&p, rest.at, n - 1, &used, &msg), 1);
    CHECK(used == n - 1 && msg.data == rest.at + prefix_bytes - 1);
    input_free(&first);
    input_free(&rest);
    adieu_frame_parser_free(&p);
}

static void prefix_split_2(void)
{
    prefix_split(2);
}

static void prefix_split_4(void)
{
    prefix_split(4);
}

static void truncated_in_prefix(void)
{
    adieu_frame_parser_t p;
    adieu_frame_msg_t msg = {0};
    size_t used;
    input_t in = input_make("\x00\x00\x00", 3);
    adieu_frame_parser_init(&p, 2, 100);
    CHECK_EQ(adieu_frame_parse(&p, in.at, 1, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parser_eof(&p), ADIEU_ETRUNCATED);
    adieu_frame_parser_init(&p, 4, 100);
    CHECK_EQ(adieu_frame_parse(&p, in.at, 3, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parser_eof(&p), ADIEU_ETRUNCATED);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void truncated_in_payload(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 100);
    adieu_frame_msg_t msg = {0};
    size_t used;
    /* A complete prefix with none of its payload yet is inside a message already. */
    input_t prefix = input_make("\x00\x03", 2);
    CHECK_EQ(adieu_frame_parse(&p, prefix.at, 2, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parser_eof(&p), ADIEU_ETRUNCATED);
    input_t part = input_make("ab", 2);
    CHECK_EQ(adieu_frame_parse(&p, part.at, 2, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parser_eof(&p), ADIEU_ETRUNCATED);
    CHECK(!adieu_frame_parser_idle(&p));
    adieu_frame_parser_free(&p);
    input_free(&prefix);
    input_free(&part);
}

static void eof_between_messages(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 100);
    CHECK_EQ(adieu_frame_parser_eof(&p), 0);
    adieu_frame_msg_t msg = {0};
    size_t used;
    input_t in = input_make("\x00\x02pq\x00\x00\x00\x02rs", 10);
    CHECK_EQ(adieu_frame_parse(&p, in.at, 4, &used, &msg), 1);
    CHECK_EQ(adieu_frame_parser_eof(&p), 0);
    CHECK_EQ(adieu_frame_parse(&p, in.at + 4, 2, &used, &msg), 1);
    CHECK_EQ(adieu_frame_parser_eof(&p), 0);
    /* The last message split, so delivered from the body buffer. */
    CHECK_EQ(adieu_frame_parse(&p, in.at + 6, 3, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parse(&p, in.at + 9, 1, &used, &msg), 1);
    CHECK(msg.len == 2 && memcmp(msg.data, "rs", 2) == 0);
    CHECK_EQ(adieu_frame_parser_eof(&p), 0);
    CHECK_EQ(adieu_frame_parse(&p, in.at + 10, 0, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parser_eof(&p), 0);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void body_zero_copy_whole_payload(void)
{
    uint8_t bytes[2 + 300];
    size_t n = frame_make(bytes, 2, 300, 'w');
    input_t in = input_make(bytes, n);
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 1000);
    adieu_frame_msg_t msg = {0};
    size_t used;
    CHECK_EQ(adieu_frame_parse(&p, in.at, n, &used, &msg), 1);
    CHECK(msg.data == in.at + 2);
    CHECK(p.body.data == NULL);
    adieu_frame_parser_free(&p);
    input_free(&in);
}

static void body_copy_split_payload(void)
{
    uint8_t bytes[2 + 300];
    size_t n = frame_make(bytes, 2, 300, 'c');
    input_t head = input_make(bytes, 100);
    input_t tail = input_make(bytes + 100, n - 100);
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 1000);
    adieu_frame_msg_t msg = {0};
    size_t used;
    CHECK_EQ(adieu_frame_parse(&p, head.at, 100, &used, &msg), 0);
    CHECK_EQ(used, 100);
    /* The caller may reuse its input as soon as the call returns: what the parser needs of it
     * must have been copied. */
    memset(head.at, 0xee, 100);
    CHECK_EQ(adieu_frame_parse(&p, tail.at, n - 100, &used, &msg), 1);
    CHECK(msg_is(&msg, 300, 'c'));
    CHECK(msg.data == p.body.data);
    adieu_frame_parser_free(&p);
    input_free(&head);
    input_free(&tail);
}

static void body_reserved_once(void)
{
    uint8_t *bytes = malloc(4 + 5000);
    if (!CHECK(bytes != NULL)) {
        return;
    }
    size_t n = frame_make(bytes, 4, 5000, 'r');
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 4, 10000);
    adieu_frame_msg_t msg = {0};
    size_t used;
    const uint8_t *storage = NULL;
    size_t moves = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        input_t one = input_make(bytes + i, 1);
        rc = adieu_frame_parse(&p, one.at, 1, &used, &msg);
        input_free(&one);
        if (i == 4) {
            storage = p.body.data;
            CHECK(p.body.cap >= 5000);
        } else if (i > 4 && p.body.data != storage) {
            moves++;
        }
    }
    CHECK_EQ(rc, 1);
    CHECK_EQ(moves, 0);
    CHECK(msg_is(&msg, 5000, 'r'));
    adieu_frame_parser_free(&p);
    free(bytes);
}

/* A 16 MiB declaration followed by 100 bytes holds storage for what arrived, not for what was
 * declared. */
static void body_grows_with_input(void)
{
    uint8_t head[4 + 100] = {0x01, 0x00, 0x00, 0x00};
    memset(head + 4, 'g', 100);
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 4, 32u << 20);
    adieu_frame_msg_t msg = {0};
    size_t used = 0;
    CHECK_EQ(adieu_frame_parse(&p, head, sizeof(head), &used, &msg), 0);
    CHECK_EQ(used, sizeof(head));
    CHECK(p.body.cap <= BODY_KEEP);
    adieu_frame_parser_free(&p);
}

/* Delivers a message of n bytes split in two, then makes the next call. */
static void split_then_next_call(adieu_frame_parser_t *p, unsigned prefix_bytes, size_t n)
{
    uint8_t *bytes = malloc(4 + n);
    if (!CHECK(bytes != NULL)) {
        return;
    }
    size_t total = frame_make(bytes, prefix_bytes, n, 'k');
    input_t head = input_make(bytes, total / 2);
    input_t tail = input_make(bytes + total / 2, total - total / 2);
    adieu_frame_msg_t msg = {0};
    size_t used;
    CHECK_EQ(adieu_frame_parse(p, head.at, total / 2, &used, &msg), 0);
    CHECK_EQ(adieu_frame_parse(p, tail.at, total - total / 2, &used, &msg), 1);
    /* The message stays valid until the next call, however large its storage. */
    CHECK(msg_is(&msg, n, 'k'));
    CHECK(msg.data == p->body.data);
    CHECK_EQ(adieu_frame_parse(p, NULL, 0, &used, &msg), 0);
    CHECK_EQ(adieu_buf_size(&p->body), 0);
    input_free(&head);
    input_free(&tail);
    free(bytes);
}

static void body_kept_up_to_64k(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, SIZE_MAX);
    split_then_next_call(&p, 2, 65535);
    /* The largest 2-byte message fits the storage kept, so steady state does not allocate. */
    const uint8_t *storage = p.body.data;
    CHECK(storage != NULL && p.body.cap >= 65535 && p.body.cap <= BODY_KEEP);
    split_then_next_call(&p, 2, 100);
    CHECK(p.body.data == storage);
    split_then_next_call(&p, 2, 65535);
    CHECK(p.body.data == storage);
    adieu_frame_parser_free(&p);
}

static void body_freed_above_64k(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 4, 16 * MIB);
    split_then_next_call(&p, 4, BODY_KEEP + 1);
    /* An idle connection does not keep the storage of its largest message. */
    CHECK(p.body.data == NULL);
    CHECK_EQ(p.body.cap, 0);
    split_then_next_call(&p, 4, MIB);
    CHECK(p.body.data == NULL);
    adieu_frame_parser_free(&p);
}

static void trim_between_messages(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, SIZE_MAX);
    split_then_next_call(&p, 2, 1000);
    CHECK(p.body.data != NULL);
    /* The read is done and the parser waits for a prefix: an idle connection keeps nothing. */
    adieu_frame_parser_trim(&p);
    CHECK(p.body.data == NULL);
    CHECK_EQ(p.body.cap, 0);
    /* A partial prefix lives in the parser itself: trimming there loses nothing. */
    adieu_frame_msg_t msg = {0};
    size_t used;
    input_t first = input_make("\x00", 1);
    CHECK_EQ(adieu_frame_parse(&p, first.at, 1, &used, &msg), 0);
    adieu_frame_parser_trim(&p);
    input_t rest = input_make("\x03"
                              "abc",
                              4);
    CHECK_EQ(adieu_frame_parse(&p, rest.at, 4, &used, &msg), 1);
    CHECK(msg.len == 3 && memcmp(msg.data, "abc", 3) == 0);
    input_free(&first);
    input_free(&rest);
    adieu_frame_parser_free(&p);
}

static void trim_gives_to_the_pool(void)
{
    adieu_buf_pool_t pool = {.max_bytes = 1 << 20, .max_block = 1 << 16};
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, SIZE_MAX);
    p.pool = &pool;
    split_then_next_call(&p, 2, 1000);
    uint8_t *storage = p.body.data;
    adieu_frame_parser_trim(&p);
    /* The parser holds nothing; the pool holds its storage for the next split payload. */
    CHECK(p.body.data == NULL);
    CHECK(pool.head == storage);
    split_then_next_call(&p, 2, 1000);
    CHECK(p.body.data == storage);
    CHECK(pool.head == NULL);
    adieu_frame_parser_trim(&p);
    adieu_frame_parser_free(&p);
    adieu_buf_pool_free(&pool);
}

static void trim_keeps_a_split_payload(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, SIZE_MAX);
    adieu_frame_msg_t msg = {0};
    size_t used;
    input_t head = input_make("\x00\x06"
                              "abc",
                              5);
    CHECK_EQ(adieu_frame_parse(&p, head.at, 5, &used, &msg), 0);
    /* Inside a payload the storage holds what was gathered: trim keeps it. */
    adieu_frame_parser_trim(&p);
    CHECK(p.body.data != NULL);
    input_t tail = input_make("def", 3);
    CHECK_EQ(adieu_frame_parse(&p, tail.at, 3, &used, &msg), 1);
    CHECK(msg.len == 6 && memcmp(msg.data, "abcdef", 6) == 0);
    input_free(&head);
    input_free(&tail);
    adieu_frame_parser_free(&p);
}

static void parser_free_resets(void)
{
    adieu_frame_parser_t p;
    adieu_frame_parser_init(&p, 2, 100);
    adieu_frame_msg_t msg = {0};
    size_t used;
    input_t part = input_make("\x00\x05uvw", 5);
    CHECK_EQ(adieu_frame_parse(&p, part.at, 5, &used, &msg), 0);
    adieu_frame_parser_free(&p);
    CHECK(p.body.data == NULL);
    CHECK(adieu_frame_parser_idle(&p));
    /* The half-assembled message is gone; a new one parses from its prefix. */
    input_t whole = input_make("\x00\x02xy", 4);
    CHECK_EQ(adieu_frame_parse(&p, whole.at, 4, &used, &msg), 1);
    CHECK(msg.len == 2 && memcmp(msg.data, "xy", 2) == 0);
    adieu_frame_parser_free(&p);
    input_free(&part);
    input_free(&whole);
}

int main(void)
{
    CHECK_RUN(parse_all_at_once_2);
    CHECK_RUN(parse_all_at_once_4);
    CHECK_RUN(parse_one_byte_at_a_time_2);
    CHECK_RUN(parse_one_byte_at_a_time_4);
    CHECK_RUN(parse_every_split_offset_2);
    CHECK_RUN(parse_every_split_offset_4);
    CHECK_RUN(parse_every_two_splits_2);
    CHECK_RUN(parse_every_two_splits_4);
    CHECK_RUN(parse_random_splits_2);
    CHECK_RUN(parse_random_splits_4);
    CHECK_RUN(prefix_encode_2);
    CHECK_RUN(prefix_encode_4);
    CHECK_RUN(init_caps_max_message);
    CHECK_RUN(parse_literal_vector_2);
    CHECK_RUN(parse_literal_vector_4);
    CHECK_RUN(parse_empty_input);
    CHECK_RUN(parse_one_message_per_call);
    CHECK_RUN(zero_length_2);
    CHECK_RUN(zero_length_4);
    CHECK_RUN(max_length_2);
    CHECK_RUN(max_length_4);
    CHECK_RUN(max_message_zero);
    CHECK_RUN(over_max_declared);
    CHECK_RUN(over_max_after_messages);
    CHECK_RUN(over_max_prefix_split);
    CHECK_RUN(failed_is_terminal);
    CHECK_RUN(prefix_split_2);
    CHECK_RUN(prefix_split_4);
    CHECK_RUN(truncated_in_prefix);
    CHECK_RUN(truncated_in_payload);
    CHECK_RUN(eof_between_messages);
    CHECK_RUN(body_zero_copy_whole_payload);
    CHECK_RUN(body_copy_split_payload);
    CHECK_RUN(body_reserved_once);
    CHECK_RUN(body_grows_with_input);
    CHECK_RUN(body_kept_up_to_64k);
    CHECK_RUN(body_freed_above_64k);
    CHECK_RUN(trim_between_messages);
    CHECK_RUN(trim_gives_to_the_pool);
    CHECK_RUN(trim_keeps_a_split_payload);
    CHECK_RUN(parser_free_resets);
    return check_done();
}
