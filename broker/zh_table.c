/*  zh_table.c — byte-string keyed hash table on zhashx (see zh_table.h).

    Keys are zh_key_t {len, data}. A lookup passes a key on the stack that
    points into the caller's buffer; the duplicator makes the stored copy
    with the bytes right after the struct, in one allocation.
*/
#include "zh_table.h"

#include <czmq.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

typedef struct {
    size_t len;
    const uint8_t *data;
} zh_key_t;

struct _zh_table_t {
    zhashx_t *hash;
};

//  The hash: 8 bytes at a time, each word folded in with a 64x64->128
//  multiply (the "mum" step of wyhash), from a random per-process seed.
//  Routing ids are chosen by the peer (ZMQ_ROUTING_ID), so an unseeded
//  hash would let a client pick ids that all land in one chain; with the
//  seed it cannot know where its ids land. About 20 instructions for a
//  16-byte id, where byte-at-a-time FNV-1a took about 100.
static uint64_t s_seed;
static pthread_once_t s_seed_once = PTHREAD_ONCE_INIT;

static void
s_seed_init (void)
{
    uint64_t seed = 0;
    if (getrandom (&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)zclock_time () ^ ((uint64_t)getpid () << 32);
    s_seed = seed | 1;
}

static inline uint64_t
s_mum (uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t
zh_table_hash (const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *)data;
    uint64_t h = seed ^ s_mum (len ^ 0xa0761d6478bd642fULL, 0xe7037ed1a0b428dbULL);
    while (len >= 8) {
        uint64_t w;
        memcpy (&w, p, 8);
        h = s_mum (h ^ w, 0x8ebc6af09c88c6e3ULL);
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy (&w, p, len);
        h = s_mum (h ^ w, 0x589965cc75374cc3ULL);
    }
    return s_mum (h, 0x1d8e4e27c47d124fULL);
}

static size_t
s_key_hash (const void *item)
{
    const zh_key_t *key = (const zh_key_t *)item;
    return (size_t)zh_table_hash (key->data, key->len, s_seed);
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
    pthread_once (&s_seed_once, s_seed_init);
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
