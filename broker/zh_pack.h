/*  zh_pack.h — small msgpack helpers for the host agent's answers.

    Where it sits: zh_agent.c and zh_lifecycle.c build the maps the host
    agent answers with ({"ok": …}) and read the request map with these.
*/
#ifndef ZH_PACK_H
#define ZH_PACK_H

#include <msgpack.h>
#include <stdbool.h>
#include <string.h>

static inline void
zh_pack_str (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, s, len);
}

//  {"ok": false, "error": {"code": code, "message": message}}
static inline void
zh_pack_error (msgpack_packer *pk, const char *code, const char *message)
{
    msgpack_pack_map (pk, 2);
    zh_pack_str (pk, "ok");
    msgpack_pack_false (pk);
    zh_pack_str (pk, "error");
    msgpack_pack_map (pk, 2);
    zh_pack_str (pk, "code");
    zh_pack_str (pk, code);
    zh_pack_str (pk, "message");
    zh_pack_str (pk, message);
}

//  The value under a string key of a msgpack map, or NULL.
static inline const msgpack_object *
zh_map_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
            memcmp (k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

//  A non-negative integer value, or -1 when absent; -2 when of the wrong
//  type or negative.
static inline int64_t
zh_map_get_uint (const msgpack_object *map, const char *key)
{
    const msgpack_object *v = zh_map_get (map, key);
    if (!v) return -1;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= (uint64_t)INT64_MAX)
        return (int64_t)v->via.u64;
    return -2;
}

#endif
