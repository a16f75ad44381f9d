/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for util/buf.c, the growable byte buffer: one scenario per function, named
 * <operation>_<situation>, and a seeded random run checked against a trivial model.
 */
#include <stdint.h>
#include <string.h>

#include "adieu/adieu.h"
#include "util/buf.h"

#include "check.h"

/* AddressSanitizer aborts on an allocation it cannot satisfy; the ENOMEM scenarios need
 * malloc to return NULL instead, as the C library does. ASan still prints a "failed to allocate"
 * WARNING line for each of them: those lines are expected. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* A size no allocator can satisfy, yet without overflow in the buffer's own arithmetic, and
 * small enough that valgrind does not flag it as a negative size passed to malloc. */
#define IMPOSSIBLE (SIZE_MAX / 4)

/* splitmix64: a small, seedable generator, so every random run can be replayed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(seed + i * 7);
    }
}

/* Every field of b equals the snapshot; used to prove a failed call changed nothing. */
static bool same_buf(const adieu_buf_t *b, const adieu_buf_t *snapshot)
{
    return b->data == snapshot->data && b->off == snapshot->off && b->len == snapshot->len &&
           b->cap == snapshot->cap;
}

static void init_is_empty(void)
{
    adieu_buf_t b;
    memset(&b, 0xa5, sizeof(b));
    adieu_buf_init(&b);
    CHECK(b.data == NULL);
    CHECK_EQ(b.off, 0);
    CHECK_EQ(b.len, 0);
    CHECK_EQ(b.cap, 0);
    CHECK_EQ(adieu_buf_size(&b), 0);
    adieu_buf_free(&b);
}

static void zeroed_is_usable(void)
{
    adieu_buf_t b = {0};
    CHECK_EQ(adieu_buf_size(&b), 0);
    CHECK_EQ(adieu_buf_append(&b, "abc", 3), 0);
    CHECK_EQ(adieu_buf_size(&b), 3);
    CHECK_MEM_EQ(adieu_buf_head(&b), "abc", 3);
    adieu_buf_free(&b);
}

static void reserve_from_empty(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    uint8_t *p = adieu_buf_reserve(&b, 10);
    if (!CHECK(p != NULL)) {
        return;
    }
    CHECK(p == b.data);
    CHECK(b.cap >= 10);
    CHECK_EQ(b.len, 0);
    /* The whole reservation must be writable (ASan and valgrind would catch a short one). */
    memset(p, 'x', 10);
    adieu_buf_commit(&b, 10);
    CHECK_EQ(adieu_buf_size(&b), 10);
    adieu_buf_free(&b);
}

static void reserve_zero_from_empty(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    /* NULL means failure, so even a zero-byte reservation must give a real pointer. */
    CHECK(adieu_buf_reserve(&b, 0) != NULL);
    CHECK(b.data != NULL);
    adieu_buf_free(&b);
}

static void reserve_within_room(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "hello", 5), 0);
    uint8_t *data = b.data;
    size_t cap = b.cap;
    uint8_t *p = adieu_buf_reserve(&b, cap - 5);
    CHECK(p == data + 5);
    CHECK(b.data == data);
    CHECK_EQ(b.cap, cap);
    CHECK_MEM_EQ(adieu_buf_head(&b), "hello", 5);
    adieu_buf_free(&b);
}

static void reserve_compacts_when_that_makes_room(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    uint8_t *p = adieu_buf_reserve(&b, 100);
    if (!CHECK(p != NULL)) {
        return;
    }
    size_t cap = b.cap;
    fill_pattern(p, cap, 3);
    adieu_buf_commit(&b, cap);
    adieu_buf_consume(&b, cap - 10);
    /* 10 unread bytes at the end; asking for cap - 10 fits only after sliding them down. */
    uint8_t *data = b.data;
    uint8_t expect[10];
    memcpy(expect, adieu_buf_head(&b), 10);
    p = adieu_buf_reserve(&b, cap - 10);
    CHECK(p != NULL);
    CHECK(b.data == data);
    CHECK_EQ(b.cap, cap);
    CHECK_EQ(b.off, 0);
    CHECK_EQ(b.len, 10);
    CHECK(p == b.data + 10);
    CHECK_MEM_EQ(adieu_buf_head(&b), expect, 10);
    adieu_buf_free(&b);
}

static void reserve_grows_past_unread(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    uint8_t pattern[200];
    fill_pattern(pattern, sizeof(pattern), 11);
    CHECK_EQ(adieu_buf_append(&b, pattern, sizeof(pattern)), 0);
    adieu_buf_consume(&b, 50);
    size_t cap = b.cap;
    /* Compacting cannot make room for cap more bytes: the buffer must grow, keep only the
     * unread bytes, and start them at the front. */
    uint8_t *p = adieu_buf_reserve(&b, cap);
    if (!CHECK(p != NULL)) {
        return;
    }
    CHECK(b.cap >= 150 + cap);
    CHECK_EQ(b.off, 0);
    CHECK_EQ(b.len, 150);
    CHECK_MEM_EQ(adieu_buf_head(&b), pattern + 50, 150);
    memset(p, 0, cap);
    adieu_buf_free(&b);
}

static void reserve_doubles(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    size_t growths = 0;
    size_t cap = 0;
    bool doubling = true;
    for (size_t i = 0; i < 100000; i++) {
        uint8_t byte = (uint8_t)i;
        if (adieu_buf_append(&b, &byte, 1) != 0) {
            CHECK(false);
            break;
        }
        if (b.cap != cap) {
            doubling = doubling && (cap == 0 || b.cap >= 2 * cap);
            cap = b.cap;
            growths++;
        }
    }
    CHECK(doubling);
    /* 64 << 11 > 100000: geometric growth needs at most a dozen reallocations here. */
    CHECK(growths <= 12);
    CHECK_EQ(adieu_buf_size(&b), 100000);
    CHECK_EQ(adieu_buf_head(&b)[99999], (uint8_t)99999);
    adieu_buf_free(&b);
}

static void reserve_large_is_not_doubled(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    /* One large reservation (a declared message length) should not get up to twice its
     * size: growth doubles the current storage, not the request. */
    CHECK(adieu_buf_reserve(&b, 100000) != NULL);
    CHECK(b.cap >= 100000 && b.cap < 200000);
    adieu_buf_free(&b);
}

static void reserve_overflow_fails_unchanged(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abcdef", 6), 0);
    adieu_buf_consume(&b, 1);
    adieu_buf_t snapshot = b;
    /* 5 unread bytes + SIZE_MAX - 2 overflows size_t: it must fail, not wrap to a small size. */
    CHECK(adieu_buf_reserve(&b, SIZE_MAX - 2) == NULL);
    CHECK(same_buf(&b, &snapshot));
    CHECK(adieu_buf_reserve(&b, SIZE_MAX) == NULL);
    CHECK(same_buf(&b, &snapshot));
    CHECK_MEM_EQ(adieu_buf_head(&b), "bcdef", 5);
    adieu_buf_free(&b);
}

static void reserve_enomem_fails_unchanged(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abcdef", 6), 0);
    /* off == 0 takes the realloc path. */
    adieu_buf_t snapshot = b;
    CHECK(adieu_buf_reserve(&b, IMPOSSIBLE) == NULL);
    CHECK(same_buf(&b, &snapshot));
    /* off > 0 takes the malloc-and-copy path. */
    adieu_buf_consume(&b, 2);
    snapshot = b;
    CHECK(adieu_buf_reserve(&b, IMPOSSIBLE) == NULL);
    CHECK(same_buf(&b, &snapshot));
    CHECK_MEM_EQ(adieu_buf_head(&b), "cdef", 4);
    adieu_buf_free(&b);
    /* And from no storage at all. */
    CHECK(adieu_buf_reserve(&b, IMPOSSIBLE) == NULL);
    CHECK(b.data == NULL && b.cap == 0);
}

static void append_then_read(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abc", 3), 0);
    CHECK_EQ(adieu_buf_append(&b, "defg", 4), 0);
    CHECK_EQ(adieu_buf_size(&b), 7);
    CHECK_MEM_EQ(adieu_buf_head(&b), "abcdefg", 7);
    adieu_buf_free(&b);
}

static void append_zero_bytes(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, NULL, 0), 0);
    CHECK(b.data == NULL);
    CHECK_EQ(adieu_buf_size(&b), 0);
    CHECK_EQ(adieu_buf_append(&b, "x", 1), 0);
    CHECK_EQ(adieu_buf_append(&b, NULL, 0), 0);
    CHECK_EQ(adieu_buf_size(&b), 1);
    adieu_buf_free(&b);
}

static void append_enomem(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "xy", 2), 0);
    adieu_buf_t snapshot = b;
    /* The source is never read when the room cannot be made, so any pointer will do; it is
     * read through a volatile so that link-time optimisation does not see a 32-byte object
     * passed with an impossible size and warn about a read that never happens. */
    const void *volatile any = &b;
    CHECK_EQ(adieu_buf_append(&b, any, IMPOSSIBLE), ADIEU_ENOMEM);
    CHECK(same_buf(&b, &snapshot));
    CHECK_MEM_EQ(adieu_buf_head(&b), "xy", 2);
    adieu_buf_free(&b);
}

static void consume_part(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abcdef", 6), 0);
    adieu_buf_consume(&b, 2);
    CHECK_EQ(b.off, 2);
    CHECK_EQ(adieu_buf_size(&b), 4);
    CHECK_MEM_EQ(adieu_buf_head(&b), "cdef", 4);
    adieu_buf_consume(&b, 0);
    CHECK_EQ(adieu_buf_size(&b), 4);
    adieu_buf_free(&b);
}

static void consume_all_returns_to_front(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abcdef", 6), 0);
    uint8_t *data = b.data;
    adieu_buf_consume(&b, 4);
    adieu_buf_consume(&b, 2);
    CHECK_EQ(b.off, 0);
    CHECK_EQ(b.len, 0);
    CHECK(b.data == data);
    /* The next write starts at the front again. */
    CHECK(adieu_buf_reserve(&b, 1) == data);
    adieu_buf_free(&b);
}

static void reset_keeps_storage(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abcdef", 6), 0);
    adieu_buf_consume(&b, 1);
    uint8_t *data = b.data;
    size_t cap = b.cap;
    adieu_buf_reset(&b);
    CHECK_EQ(adieu_buf_size(&b), 0);
    CHECK_EQ(b.off, 0);
    CHECK(b.data == data);
    CHECK_EQ(b.cap, cap);
    adieu_buf_free(&b);
}

static void shrink_frees_when_empty_and_big(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK(adieu_buf_reserve(&b, 1000) != NULL);
    adieu_buf_shrink(&b, 999);
    CHECK(b.data == NULL);
    CHECK_EQ(b.cap, 0);
    CHECK_EQ(adieu_buf_size(&b), 0);
    /* The buffer is usable again. */
    CHECK_EQ(adieu_buf_append(&b, "z", 1), 0);
    adieu_buf_free(&b);
}

static void shrink_keeps_small(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK(adieu_buf_reserve(&b, 1000) != NULL);
    size_t cap = b.cap;
    uint8_t *data = b.data;
    adieu_buf_shrink(&b, cap);
    CHECK(b.data == data);
    CHECK_EQ(b.cap, cap);
    adieu_buf_free(&b);
}

static void shrink_keeps_unread(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abc", 3), 0);
    adieu_buf_shrink(&b, 0);
    CHECK(b.data != NULL);
    CHECK_EQ(adieu_buf_size(&b), 3);
    CHECK_MEM_EQ(adieu_buf_head(&b), "abc", 3);
    adieu_buf_free(&b);
}

static void pool_reuses_storage(void)
{
    adieu_buf_pool_t pool = {.max_bytes = 4096, .max_block = 1024};
    adieu_buf_t b;
    adieu_buf_init(&b);
    /* An empty pool leaves the buffer to allocate by itself. */
    adieu_buf_pool_take(&pool, &b);
    CHECK(b.data == NULL);
    CHECK_EQ(adieu_buf_append(&b, "abc", 3), 0);
    uint8_t *data = b.data;
    size_t cap = b.cap;
    adieu_buf_consume(&b, 3);
    adieu_buf_pool_give(&pool, &b);
    CHECK(b.data == NULL);
    CHECK_EQ(b.cap, 0);
    CHECK_EQ(pool.bytes, cap);
    /* Another buffer gets the same storage back, empty. */
    adieu_buf_t c;
    adieu_buf_init(&c);
    adieu_buf_pool_take(&pool, &c);
    CHECK(c.data == data);
    CHECK_EQ(c.cap, cap);
    CHECK_EQ(adieu_buf_size(&c), 0);
    CHECK_EQ(pool.bytes, 0);
    CHECK(pool.head == NULL);
    CHECK_EQ(adieu_buf_append(&c, "xyz", 3), 0);
    CHECK_MEM_EQ(adieu_buf_head(&c), "xyz", 3);
    /* A buffer that has storage keeps it. */
    adieu_buf_pool_give(&pool, &b); /* nothing to give */
    CHECK_EQ(pool.bytes, 0);
    adieu_buf_free(&c);
    adieu_buf_pool_free(&pool);
}

static void pool_is_last_in_first_out(void)
{
    adieu_buf_pool_t pool = {.max_bytes = 1 << 20, .max_block = 1 << 16};
    adieu_buf_t a, b;
    adieu_buf_init(&a);
    adieu_buf_init(&b);
    CHECK(adieu_buf_reserve(&a, 100) != NULL);
    CHECK(adieu_buf_reserve(&b, 200) != NULL);
    uint8_t *bdata = b.data;
    adieu_buf_pool_give(&pool, &a);
    adieu_buf_pool_give(&pool, &b);
    adieu_buf_t c;
    adieu_buf_init(&c);
    adieu_buf_pool_take(&pool, &c);
    CHECK(c.data == bdata);
    adieu_buf_free(&c);
    adieu_buf_pool_free(&pool);
    CHECK(pool.head == NULL);
    CHECK_EQ(pool.bytes, 0);
}

static void pool_bounds_what_it_keeps(void)
{
    adieu_buf_pool_t pool = {.max_bytes = 300, .max_block = 256};
    adieu_buf_t big, a, b;
    adieu_buf_init(&big);
    adieu_buf_init(&a);
    adieu_buf_init(&b);
    CHECK(adieu_buf_reserve(&big, 1000) != NULL);
    CHECK(adieu_buf_reserve(&a, 200) != NULL);
    CHECK(adieu_buf_reserve(&b, 200) != NULL);
    /* Over max_block: freed (valgrind and ASan see it go). */
    adieu_buf_pool_give(&pool, &big);
    CHECK(big.data == NULL);
    CHECK_EQ(pool.bytes, 0);
    adieu_buf_pool_give(&pool, &a);
    CHECK_EQ(pool.bytes, 200);
    /* The second would take the pool over max_bytes: freed. */
    adieu_buf_pool_give(&pool, &b);
    CHECK(b.data == NULL);
    CHECK_EQ(pool.bytes, 200);
    /* A zeroed pool keeps nothing. */
    adieu_buf_pool_t none = {0};
    CHECK(adieu_buf_reserve(&b, 10) != NULL);
    adieu_buf_pool_give(&none, &b);
    CHECK(b.data == NULL && none.head == NULL);
    adieu_buf_pool_free(&pool);
}

static void free_then_reuse(void)
{
    adieu_buf_t b;
    adieu_buf_init(&b);
    CHECK_EQ(adieu_buf_append(&b, "abc", 3), 0);
    adieu_buf_free(&b);
    CHECK(b.data == NULL);
    CHECK_EQ(b.cap, 0);
    CHECK_EQ(adieu_buf_size(&b), 0);
    CHECK_EQ(adieu_buf_append(&b, "de", 2), 0);
    CHECK_MEM_EQ(adieu_buf_head(&b), "de", 2);
    adieu_buf_free(&b);
    /* Freeing twice is harmless: the first free left an empty buffer. */
    adieu_buf_free(&b);
}

/* The model: the unread bytes, kept in a plain array. */
typedef struct {
    uint8_t bytes[1 << 17];
    size_t len;
} model_t;

/* One random operation on both the buffer and the model. */
static void random_op(adieu_buf_t *b, model_t *m, uint64_t *rng)
{
    uint8_t chunk[512];
    size_t n = (size_t)(next_random(rng) % sizeof(chunk));
    switch (next_random(rng) % 6) {
    case 0:
    case 1:
        if (m->len + n > sizeof(m->bytes)) {
            n = sizeof(m->bytes) - m->len;
        }
        fill_pattern(chunk, n, (uint8_t)next_random(rng));
        CHECK_EQ(adieu_buf_append(b, chunk, n), 0);
        memcpy(m->bytes + m->len, chunk, n);
        m->len += n;
        break;
    case 2: {
        /* Reserve more than is written, then commit only part of it. */
        size_t want = n + (size_t)(next_random(rng) % 64);
        if (m->len + want > sizeof(m->bytes)) {
            break;
        }
        uint8_t *p = adieu_buf_reserve(b, want);
        if (!CHECK(p != NULL)) {
            break;
        }
        fill_pattern(chunk, n, (uint8_t)next_random(rng));
        memcpy(p, chunk, n);
        adieu_buf_commit(b, n);
        memcpy(m->bytes + m->len, chunk, n);
        m->len += n;
        break;
    }
    case 3:
    case 4: {
        size_t k = m->len == 0 ? 0 : (size_t)(next_random(rng) % (m->len + 1));
        adieu_buf_consume(b, k);
        memmove(m->bytes, m->bytes + k, m->len - k);
        m->len -= k;
        break;
    }
    default:
        if (next_random(rng) % 4 == 0) {
            adieu_buf_reset(b);
            m->len = 0;
        }
        adieu_buf_shrink(b, (size_t)(next_random(rng) % 4096));
        break;
    }
}

static void random_ops_match_model(void)
{
    static model_t m;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        adieu_buf_t b;
        adieu_buf_init(&b);
        m.len = 0;
        uint64_t rng = seed;
        long failed_before = check_failures();
        for (int i = 0; i < 5000; i++) {
            random_op(&b, &m, &rng);
            CHECK(b.off <= b.len && b.len <= b.cap);
            CHECK_EQ(adieu_buf_size(&b), m.len);
            if (b.off == b.len) {
                CHECK_EQ(b.off, 0);
            }
            /* NOTE: only with bytes to compare: a buffer without storage has no head (NULL
             * + 0 is undefined in C, and clang's UBSan says so). */
            if (m.len > 0)
                CHECK_MEM_EQ(adieu_buf_head(&b), m.bytes, m.len);
            if (check_failures() != failed_before) {
                fprintf(stderr, "random_ops_match_model: seed %llu, step %d\n",
                        (unsigned long long)seed, i);
                break;
            }
        }
        adieu_buf_free(&b);
    }
}

int main(void)
{
    CHECK_RUN(init_is_empty);
    CHECK_RUN(zeroed_is_usable);
    CHECK_RUN(reserve_from_empty);
    CHECK_RUN(reserve_zero_from_empty);
    CHECK_RUN(reserve_within_room);
    CHECK_RUN(reserve_compacts_when_that_makes_room);
    CHECK_RUN(reserve_grows_past_unread);
    CHECK_RUN(reserve_doubles);
    CHECK_RUN(reserve_large_is_not_doubled);
    CHECK_RUN(reserve_overflow_fails_unchanged);
    CHECK_RUN(reserve_enomem_fails_unchanged);
    CHECK_RUN(append_then_read);
    CHECK_RUN(append_zero_bytes);
    CHECK_RUN(append_enomem);
    CHECK_RUN(consume_part);
    CHECK_RUN(consume_all_returns_to_front);
    CHECK_RUN(reset_keeps_storage);
    CHECK_RUN(shrink_frees_when_empty_and_big);
    CHECK_RUN(shrink_keeps_small);
    CHECK_RUN(shrink_keeps_unread);
    CHECK_RUN(pool_reuses_storage);
    CHECK_RUN(pool_is_last_in_first_out);
    CHECK_RUN(pool_bounds_what_it_keeps);
    CHECK_RUN(free_then_reuse);
    CHECK_RUN(random_ops_match_model);
    return check_done();
}
