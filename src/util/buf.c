/* SPDX-License-Identifier: MIT */
/*
 * The growable byte buffer of util/buf.h. It allocates only when asked for room it does not
 * have, grows by doubling so that a run of small appends costs amortised constant time, and
 * checks every size computation for overflow because the sizes it is asked for may come
 * straight from a peer's declared length.
 */
#include "util/alloc.h"
#include "util/buf.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"

/* The smallest storage ever allocated: tiny reservations would otherwise each cost a
 * reallocation while a buffer warms up. */
#define BUF_MIN_CAP ((size_t)64)

void adieu_buf_init(adieu_buf_t *b)
{
    assert(b != NULL);
    b->data = NULL;
    b->off = 0;
    b->len = 0;
    b->cap = 0;
}

void adieu_buf_free(adieu_buf_t *b)
{
    assert(b != NULL);
    adieu__free(b->data);
    adieu_buf_init(b);
}

/* The capacity to grow to when need bytes must fit: at least double the current storage, so
 * that repeated appends reallocate only a logarithmic number of times, but exactly need when
 * one large reservation asks for more than that, so that a single big message does not get
 * up to twice its size. Never below BUF_MIN_CAP. */
static size_t grown_cap(size_t cap, size_t need)
{
    size_t doubled = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    size_t want = doubled > need ? doubled : need;
    return want > BUF_MIN_CAP ? want : BUF_MIN_CAP;
}

uint8_t *adieu__buf_reserve_slow(adieu_buf_t *b, size_t n)
{
    assert(b != NULL);
    assert(b->off <= b->len && b->len <= b->cap);
    if (b->data != NULL && b->cap - b->len >= n) {
        return b->data + b->len;
    }
    size_t unread = b->len - b->off;
    if (b->data != NULL && b->cap - unread >= n) {
        /* The consumed head of the buffer is enough room: slide the unread bytes down rather
         * than allocate. */
        memmove(b->data, b->data + b->off, unread);
        b->off = 0;
        b->len = unread;
        return b->data + b->len;
    }
    if (n > SIZE_MAX - unread) {
        return NULL;
    }
    size_t cap = grown_cap(b->cap, unread + n);
    uint8_t *data;
    if (b->off == 0) {
        data = adieu__realloc(b->data, cap);
        if (data == NULL) {
            return NULL;
        }
    } else {
        /* Only the unread bytes are worth keeping, so copy those alone instead of letting
         * realloc copy the consumed head as well. The old storage stays valid until the copy
         * succeeded, which keeps the buffer unchanged on failure. */
        data = adieu__malloc(cap);
        if (data == NULL) {
            return NULL;
        }
        memcpy(data, b->data + b->off, unread);
        adieu__free(b->data);
    }
    b->data = data;
    b->cap = cap;
    b->off = 0;
    b->len = unread;
    return b->data + b->len;
}

int adieu_buf_append(adieu_buf_t *b, const void *p, size_t n)
{
    assert(b != NULL);
    assert(p != NULL || n == 0);
    if (n == 0) {
        return 0;
    }
    uint8_t *dst = adieu_buf_reserve(b, n);
    if (dst == NULL) {
        return ADIEU_ENOMEM;
    }
    memcpy(dst, p, n);
    adieu_buf_commit(b, n);
    return 0;
}

void adieu_buf_consume(adieu_buf_t *b, size_t n)
{
    assert(b != NULL);
    assert(n <= b->len - b->off);
    b->off += n;
    /* Starting again from the front when the buffer drains means the common case (everything
     * read at once) never needs a memmove in adieu_buf_reserve(). */
    if (b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
}

void adieu_buf_shrink(adieu_buf_t *b, size_t keep)
{
    assert(b != NULL);
    if (b->off == b->len && b->cap > keep) {
        adieu_buf_free(b);
    }
}

/* A free block in a pool: its own first bytes link it to the next. */
typedef struct pool_block_s {
    struct pool_block_s *next;
    size_t cap;
} pool_block_t;

_Static_assert(sizeof(pool_block_t) <= BUF_MIN_CAP, "a pooled block holds its own link");

void adieu__buf_pool_pop(adieu_buf_pool_t *pool, adieu_buf_t *b)
{
    pool_block_t *blk = pool->head;
    assert(blk != NULL && b->data == NULL);
    pool->head = blk->next;
    pool->bytes -= blk->cap;
    b->data = (uint8_t *)blk;
    b->cap = blk->cap;
    b->off = 0;
    b->len = 0;
}

void adieu_buf_pool_give(adieu_buf_pool_t *pool, adieu_buf_t *b)
{
    assert(b->off == b->len);
    if (b->data == NULL)
        return;
    if (b->cap < sizeof(pool_block_t) || b->cap > pool->max_block ||
        pool->bytes > pool->max_bytes || b->cap > pool->max_bytes - pool->bytes) {
        adieu_buf_free(b);
        return;
    }
    pool_block_t *blk = (pool_block_t *)(void *)b->data;
    blk->next = pool->head;
    blk->cap = b->cap;
    pool->head = blk;
    pool->bytes += b->cap;
    adieu_buf_init(b);
}

void adieu_buf_pool_free(adieu_buf_pool_t *pool)
{
    while (pool->head != NULL) {
        pool_block_t *blk = pool->head;
        pool->head = blk->next;
        adieu__free(blk);
    }
    pool->bytes = 0;
}
