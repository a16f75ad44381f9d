/* SPDX-License-Identifier: MIT */
/*
 * A growable byte buffer with a read offset. Used for partial input (message assembly) and
 * for output queues. Capacity is kept across reset so the steady state does not allocate;
 * adieu_buf_shrink() gives memory back when a connection goes idle.
 * No libuv here: the sans-I/O core uses it.
 */
#ifndef ADIEU_UTIL_BUF_H
#define ADIEU_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data; /* NULL until the first reserve */
    size_t off;    /* start of unread bytes */
    size_t len;    /* end of written bytes: unread = len - off */
    size_t cap;
} adieu_buf_t;

/* Makes an empty buffer; never allocates. A zeroed adieu_buf_t is also empty. */
void adieu_buf_init(adieu_buf_t *b);
/* Frees the storage; the buffer is empty and usable again. */
void adieu_buf_free(adieu_buf_t *b);
/* Bytes written and not yet consumed. */
static inline size_t adieu_buf_size(const adieu_buf_t *b)
{
    return b->len - b->off;
}
static inline uint8_t *adieu_buf_head(const adieu_buf_t *b)
{
    return b->data + b->off;
}
/* The part of adieu_buf_reserve() that moves or allocates. */
uint8_t *adieu__buf_reserve_slow(adieu_buf_t *b, size_t n);
/* Ensures room for n more bytes after len (moving unread bytes to the front first when that
 * makes room). Returns a pointer to the free space, or NULL on allocation failure (the
 * buffer is unchanged). Inline: the common case (room at the end) is on every message's
 * path. */
static inline uint8_t *adieu_buf_reserve(adieu_buf_t *b, size_t n)
{
    /* NOTE: a buffer without storage always goes the slow way, even for n == 0, so that the
     * result is NULL only on failure and never the invalid expression NULL + 0. */
    if (b->data != NULL && b->cap - b->len >= n)
        return b->data + b->len;
    return adieu__buf_reserve_slow(b, n);
}
/* Appends n bytes. Returns 0 or ADIEU_ENOMEM. */
int adieu_buf_append(adieu_buf_t *b, const void *p, size_t n);
/* Marks n bytes after len as written (after adieu_buf_reserve). */
static inline void adieu_buf_commit(adieu_buf_t *b, size_t n)
{
    b->len += n;
}
/* Consumes n unread bytes; when nothing is left, off and len return to 0. */
void adieu_buf_consume(adieu_buf_t *b, size_t n);
/* Empties the buffer, keeping its storage. */
static inline void adieu_buf_reset(adieu_buf_t *b)
{
    b->off = 0;
    b->len = 0;
}
/* If empty and holding more than keep bytes of storage, frees it. */
void adieu_buf_shrink(adieu_buf_t *b, size_t keep);

/* Storage of empty buffers kept for reuse, so that many connections can hold no buffer while
 * they have nothing queued and still not allocate per message: a buffer takes storage from
 * the pool when it needs some and gives it back once empty. The free blocks are linked
 * through their own first bytes (every block is at least 64 bytes), so the pool itself never
 * allocates. At most max_bytes of storage is kept, in blocks of at most max_block bytes;
 * what does not fit is freed. A zeroed pool is empty with no room: set the two limits. */
typedef struct {
    void *head;       /* the last block given back: reused first, while still warm */
    size_t bytes;     /* storage held */
    size_t max_bytes; /* bound on bytes */
    size_t max_block; /* larger blocks are freed, not kept */
} adieu_buf_pool_t;

/* The part of adieu_buf_pool_take() that moves a block. */
void adieu__buf_pool_pop(adieu_buf_pool_t *pool, adieu_buf_t *b);
/* Gives b (which holds no storage) a block from the pool, if the pool has one; otherwise b
 * is unchanged and allocates on its first reserve as usual. */
static inline void adieu_buf_pool_take(adieu_buf_pool_t *pool, adieu_buf_t *b)
{
    /* NOTE: the buffer first: it is at hand and almost always has storage on a busy path,
     * so the pool is not even loaded. */
    if (b->data == NULL && pool->head != NULL)
        adieu__buf_pool_pop(pool, b);
}
/* Moves the storage of b, which must be empty, to the pool (or frees it when it does not
 * fit); b then holds no storage. Nothing happens to a buffer without storage. */
void adieu_buf_pool_give(adieu_buf_pool_t *pool, adieu_buf_t *b);
/* Frees every block held; the pool is then empty, its limits unchanged. */
void adieu_buf_pool_free(adieu_buf_pool_t *pool);

#endif /* ADIEU_UTIL_BUF_H */
