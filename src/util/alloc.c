/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "adieu/errors.h"
#include "util/alloc.h"

static struct {
    adieu_malloc_fn malloc_fn;
    adieu_realloc_fn realloc_fn;
    adieu_calloc_fn calloc_fn;
    adieu_free_fn free_fn;
} allocator = {malloc, realloc, calloc, free};

int adieu_replace_allocator(adieu_malloc_fn malloc_fn, adieu_realloc_fn realloc_fn,
                            adieu_calloc_fn calloc_fn, adieu_free_fn free_fn)
{
    if (malloc_fn == NULL || realloc_fn == NULL || calloc_fn == NULL || free_fn == NULL)
        return ADIEU_EINVAL;
    allocator.malloc_fn = malloc_fn;
    allocator.realloc_fn = realloc_fn;
    allocator.calloc_fn = calloc_fn;
    allocator.free_fn = free_fn;
    return 0;
}

void *adieu__malloc(size_t size)
{
    return allocator.malloc_fn(size);
}

void *adieu__realloc(void *ptr, size_t size)
{
    return allocator.realloc_fn(ptr, size);
}

void *adieu__calloc(size_t count, size_t size)
{
    return allocator.calloc_fn(count, size);
}

void adieu__free(void *ptr)
{
    allocator.free_fn(ptr);
}
