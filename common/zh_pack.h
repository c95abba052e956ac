/*  zh_pack.h — the msgpack helpers every zhost part packs and reads maps
    with: strings from C strings and spans, key/value pairs, the agent's
    error answer, and typed lookups in a decoded map.

    Where it sits: below everything that builds or reads a msgpack map by
    hand: the host agent's answers (broker), request maps (zhost-ctl,
    libzhost, zhost-bench) and the tests. Pure code, no sockets. A map
    from the wire must pass the codec's guard (zh_msgpack_check in
    zh_proto.h) before msgpack-c unpacks it.
*/
#ifndef ZH_PACK_H
#define ZH_PACK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "zh_addr.h"

//  A string: len bytes (not NUL-terminated).
static inline int
zh_pack_strn (msgpack_packer *pk, const char *s, size_t len)
{
    int rc = msgpack_pack_str (pk, len);
    return rc ? rc : msgpack_pack_str_body (pk, s ? s : "", len);
}

//  A NUL-terminated string (NULL packs as "").
static inline int
zh_pack_str (msgpack_packer *pk, const char *s)
{
    return zh_pack_strn (pk, s, s ? strlen (s) : 0);
}

static inline int
zh_pack_span (msgpack_packer *pk, zh_span_t span)
{
    return zh_pack_strn (pk, span.ptr, span.len);
}

//  key: string value / key: integer value / key: bool value.
static inline void
zh_pack_kv_str (msgpack_packer *pk, const char *key, const char *value)
{
    zh_pack_str (pk, key);
    zh_pack_str (pk, value);
}

static inline void
zh_pack_kv_int (msgpack_packer *pk, const char *key, int64_t value)
{
    zh_pack_str (pk, key);
    msgpack_pack_int64 (pk, value);
}

static inline void
zh_pack_kv_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    zh_pack_str (pk, key);
    msgpack_pack_uint64 (pk, value);
}

static inline void
zh_pack_kv_bool (msgpack_packer *pk, const char *key, bool value)
{
    zh_pack_str (pk, key);
    value ? msgpack_pack_true (pk) : msgpack_pack_false (pk);
}

//  {"ok": false, "error": {"code": code, "message": message}}
static inline void
zh_pack_error (msgpack_packer *pk, const char *code, const char *message)
{
    msgpack_pack_map (pk, 2);
    zh_pack_kv_bool (pk, "ok", false);
    zh_pack_str (pk, "error");
    msgpack_pack_map (pk, 2);
    zh_pack_kv_str (pk, "code", code);
    zh_pack_kv_str (pk, "message", message);
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
