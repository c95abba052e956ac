/*  zh_table.h — a hash table keyed by byte strings, on czmq's zhashx.

    Where it sits: the broker's two hot lookups per message go through
    here: routing id → connection (per socket; routing ids are binary) and
    proc id → route (proc id text taken straight from the head, not
    NUL-terminated). zhashx does the table; this class gives it keys that
    are (pointer, length) pairs, so neither lookup copies or terminates
    anything.
*/
#ifndef ZH_TABLE_H
#define ZH_TABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct _zh_table_t zh_table_t;

zh_table_t *zh_table_new (void);
void zh_table_destroy (zh_table_t **self_p);

//  Insert item under key (copied). -1 if the key is already there.
int zh_table_insert (zh_table_t *self, const void *key, size_t len, void *item);

//  The item under key, or NULL.
void *zh_table_lookup (zh_table_t *self, const void *key, size_t len);

//  Remove key (items are not destroyed: the caller owns them).
void zh_table_delete (zh_table_t *self, const void *key, size_t len);

size_t zh_table_size (zh_table_t *self);

//  The table's hash of len bytes under seed (the table uses a random seed
//  drawn once per process). Exposed for tests.
uint64_t zh_table_hash (const void *data, size_t len, uint64_t seed);

//  Iterate items: first, then next until NULL. Do not modify while iterating.
void *zh_table_first (zh_table_t *self);
void *zh_table_next (zh_table_t *self);

#endif
