/* SPDX-License-Identifier: MIT */
/* Internal allocation entry points: every allocation of adieu goes through these, so that
 * adieu_replace_allocator() (include/adieu/alloc.h) sees all of them. */
#ifndef ADIEU_UTIL_ALLOC_H
#define ADIEU_UTIL_ALLOC_H

#include <stddef.h>

#include "adieu/alloc.h"

void *adieu__malloc(size_t size);
void *adieu__realloc(void *ptr, size_t size);
void *adieu__calloc(size_t count, size_t size);
void adieu__free(void *ptr);

#endif /* ADIEU_UTIL_ALLOC_H */
