/* SPDX-License-Identifier: MIT */
/*
 * The allocator adieu uses for everything it allocates itself (libuv has its own:
 * uv_replace_allocator). Apart from adieu.h so that the sans-I/O core can use it without
 * libuv.
 */
#ifndef ADIEU_ALLOC_H
#define ADIEU_ALLOC_H

#include <stddef.h>

typedef void *(*adieu_malloc_fn)(size_t size);
typedef void *(*adieu_realloc_fn)(void *ptr, size_t size);
typedef void *(*adieu_calloc_fn)(size_t count, size_t size);
typedef void (*adieu_free_fn)(void *ptr);

/* Replaces the allocator, with the C library's semantics (NULL on failure). Call it before
 * any other adieu function, or after everything adieu allocated has been freed: memory from
 * one allocator must not be given to another's free. Every function is required. Returns 0
 * or ADIEU_EINVAL. Tests use it to fail the N-th allocation. */
int adieu_replace_allocator(adieu_malloc_fn malloc_fn, adieu_realloc_fn realloc_fn,
                            adieu_calloc_fn calloc_fn, adieu_free_fn free_fn);

#endif /* ADIEU_ALLOC_H */
