/*  zh_table.c — byte-string keyed hash table on zhashx (see zh_table.h).

    Keys are zh_key_t {len, data}. A lookup passes a key on the stack that
    points into the caller's buffer; the duplicator makes the stored copy
    with the bytes right after the struct, in one allocation.
*/
#include "zh_table.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t len;
    const uint8_t *data;
} zh_key_t;

struct _zh_table_t {
    zhashx_t *hash;
};

//  FNV-1a: short keys, few instructions, good spread for ids.
static size_t
s_key_hash (const void *item)
{
    const zh_key_t *key = (const zh_key_t *)item;
    uint64_t hash = 14695981039346656037ULL;
    for (size_t i = 0; i < key->len; i++) {
        hash ^= key->data[i];
        hash *= 1099511628211ULL;
    }
    return (size_t)hash;
}

static int
s_key_compare (const void *item1, const void *item2)
{
    const zh_key_t *a = (const zh_key_t *)item1;
    const zh_key_t *b = (const zh_key_t *)item2;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return memcmp (a->data, b->data, a->len);
}

static void *
s_key_dup (const void *item)
{
    const zh_key_t *key = (const zh_key_t *)item;
    zh_key_t *copy = (zh_key_t *)malloc (sizeof (zh_key_t) + key->len + 1);
    if (!copy) return NULL;
    uint8_t *bytes = (uint8_t *)(copy + 1);
    memcpy (bytes, key->data, key->len);
    bytes[key->len] = 0;
    copy->len = key->len;
    copy->data = bytes;
    return copy;
}

static void
s_key_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

zh_table_t *
zh_table_new (void)
{
    zh_table_t *self = (zh_table_t *)calloc (1, sizeof (zh_table_t));
    if (!self) return NULL;
    self->hash = zhashx_new ();
    if (!self->hash) {
        free (self);
        return NULL;
    }
    zhashx_set_key_hasher (self->hash, s_key_hash);
    zhashx_set_key_comparator (self->hash, s_key_compare);
    zhashx_set_key_duplicator (self->hash, s_key_dup);
    zhashx_set_key_destructor (self->hash, s_key_free);
    return self;
}

void
zh_table_destroy (zh_table_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy (&(*self_p)->hash);
        free (*self_p);
        *self_p = NULL;
    }
}

int
zh_table_insert (zh_table_t *self, const void *key, size_t len, void *item)
{
    zh_key_t k = {len, (const uint8_t *)key};
    return zhashx_insert (self->hash, &k, item);
}

void *
zh_table_lookup (zh_table_t *self, const void *key, size_t len)
{
    zh_key_t k = {len, (const uint8_t *)key};
    return zhashx_lookup (self->hash, &k);
}

void
zh_table_delete (zh_table_t *self, const void *key, size_t len)
{
    zh_key_t k = {len, (const uint8_t *)key};
    zhashx_delete (self->hash, &k);
}

size_t
zh_table_size (zh_table_t *self)
{
    return zhashx_size (self->hash);
}

void *
zh_table_first (zh_table_t *self)
{
    return zhashx_first (self->hash);
}

void *
zh_table_next (zh_table_t *self)
{
    return zhashx_next (self->hash);
}
