/* SPDX-License-Identifier: MIT */
/*
 * An intrusive, circular, doubly linked list with a sentinel head. A node that is not on a
 * list points to itself, so removing it twice is harmless.
 */
#ifndef ADIEU_UTIL_LIST_H
#define ADIEU_UTIL_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct adieu_list_s {
    struct adieu_list_s *prev;
    struct adieu_list_s *next;
} adieu_list_t;

#define ADIEU_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void adieu_list_init(adieu_list_t *l)
{
    l->prev = l;
    l->next = l;
}

static inline bool adieu_list_empty(const adieu_list_t *l)
{
    return l->next == l;
}

/* True when node is on some list (the sentinel itself counts as linked when not empty). */
static inline bool adieu_list_linked(const adieu_list_t *node)
{
    return node->next != node;
}

static inline void adieu_list_push_back(adieu_list_t *head, adieu_list_t *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static inline void adieu_list_remove(adieu_list_t *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    adieu_list_init(node);
}

/* Moves every node of from to the back of to; from ends empty. */
static inline void adieu_list_splice(adieu_list_t *to, adieu_list_t *from)
{
    if (adieu_list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    adieu_list_init(from);
}

#endif /* ADIEU_UTIL_LIST_H */
