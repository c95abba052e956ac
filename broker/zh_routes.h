/*  zh_routes.h — the broker's connections and routes: who is on which
    socket, which proc id goes to which connection, which ids were here
    and are gone, and which endpoints are this broker's own.

    Where it sits: below the router, the handshakes and the lifecycle,
    which look connections and routes up on every message and add or
    remove them when a handshake, a READY, a BYE or a proc's end says so.
    Above zh_table (the hash table) and zh_conn (the record).

    Invariants:
    - RT-1 (one owner): a connection is in exactly one socket's table, and
      the routes table holds only connections of those tables; removing a
      connection takes its route away in the same call and destroys it.
    - RT-2 (remembered ids): a proc id whose route went is remembered as
      gone (PROC_GONE rather than NO_SUCH_PROC), for the last ZH_GONE_MAX
      ids, until it is routed again.
    - BR-5 (caches vouch only for identical bytes; see zh_router.c): `gen`
      is bumped on every change to a connection or route table, so a
      cached connection or route is used only while gen is unchanged.

    The struct is in the header because the router reads gen and the
    lookup cache on every message (the inline lookups below); only
    zh_routes.c writes it.
*/
#ifndef ZH_ROUTES_H
#define ZH_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "zh_conn.h"
#include "zh_table.h"

#define ZH_GONE_MAX 16384 //  proc ids remembered as gone (RT-2)
#define ZH_SELF_MAX 32    //  endpoints that are "self"

typedef struct {
    zh_table_t *conns[ZH_SOCK_COUNT];            //  routing id → zh_conn_t, per socket
    zh_table_t *routes;                          //  proc id → zh_conn_t (CLIENT, PROC)
    zh_table_t *gone;                            //  proc id → its slot in gone_ring + 1
    char *gone_ring[ZH_GONE_MAX];                //  ids remembered as gone, oldest first
    size_t gone_head;                            //  index of the oldest in gone_ring
    size_t gone_count;                           //  ids in gone_ring
    char *self_eps[ZH_SELF_MAX];                 //  endpoints that are "self" (copies)
    size_t self_ep_lens[ZH_SELF_MAX];            //  their lengths
    size_t self_count;                           //  entries of self_eps
    uint64_t gen;                                //  bumped on every table change (BR-5)
    zh_conn_t *last_conn[ZH_SOCK_COUNT];         //  the last connection looked up, per socket
    uint8_t last_rid[ZH_SOCK_COUNT][ZH_RID_MAX]; //  its routing id
    size_t last_rid_len[ZH_SOCK_COUNT];          //  bytes of last_rid
    uint64_t last_gen[ZH_SOCK_COUNT];            //  gen when last_conn was found
} zh_routes_t;

zh_routes_t *zh_routes_new (void);
//  Destroys every connection still there.
void zh_routes_destroy (zh_routes_t **self_p);

//  Add an endpoint that is "self" (copied; duplicates ignored). 0 or -1.
int zh_routes_add_self (zh_routes_t *self, const char *endpoint);

//  True if endpoint (len bytes) is one of this broker's own.
static inline bool
zh_routes_is_self (const zh_routes_t *self, const char *ep, size_t len)
{
    for (size_t i = 0; i < self->self_count; i++)
        if (self->self_ep_lens[i] == len && memcmp (self->self_eps[i], ep, len) == 0) return true;
    return false;
}

//  The connection of (sock, rid), or NULL. A run of messages from one
//  peer costs one hash lookup (BR-5).
static inline zh_conn_t *
zh_routes_conn (zh_routes_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len)
{
    if (self->last_gen[sock] == self->gen && self->last_rid_len[sock] == rid_len &&
        self->last_conn[sock] && memcmp (self->last_rid[sock], rid, rid_len) == 0)
        return self->last_conn[sock];
    zh_conn_t *conn = (zh_conn_t *)zh_table_lookup (self->conns[sock], rid, rid_len);
    if (conn && rid_len <= ZH_RID_MAX) {
        memcpy (self->last_rid[sock], rid, rid_len);
        self->last_rid_len[sock] = rid_len;
        self->last_conn[sock] = conn;
        self->last_gen[sock] = self->gen;
    }
    return conn;
}

//  The connection a proc id routes to, or NULL.
static inline zh_conn_t *
zh_routes_lookup (zh_routes_t *self, const char *proc_id, size_t len)
{
    return (zh_conn_t *)zh_table_lookup (self->routes, proc_id, len);
}

//  True if addr (any kind) belongs to the connection's principal: for a
//  client or proc, its proc id at one of this broker's endpoints; for a
//  peer broker, its HELLO endpoint (BR-1; the agent's replies, AG-2).
static inline bool
zh_routes_principal_ok (const zh_routes_t *self, const zh_conn_t *conn, const zh_addr_t *addr)
{
    if (conn->kind == ZH_CONN_PEER)
        return addr->endpoint.len == conn->peer_endpoint_len &&
               memcmp (addr->endpoint.ptr, conn->peer_endpoint, addr->endpoint.len) == 0;
    return addr->proc.text.len == conn->proc_id_len &&
           memcmp (addr->proc.text.ptr, conn->proc_id, conn->proc_id_len) == 0 &&
           zh_routes_is_self (self, addr->endpoint.ptr, addr->endpoint.len);
}

//  True if proc_id was routed here and is gone (RT-2).
bool zh_routes_is_gone (zh_routes_t *self, const char *proc_id, size_t len);

//  True if proc_id is routed or remembered as gone (not to be given out).
bool zh_routes_id_taken (zh_routes_t *self, const char *proc_id, size_t len);

//  Add a connection (owned from now on) to its socket's table and, when
//  it has a proc id, route that id to it (forgetting that it was gone).
//  A connection already on that routing id is removed first ("replaced").
//  0, or -1 (the connection is destroyed).
int zh_routes_add (zh_routes_t *self, zh_conn_t *conn);

//  A connection changed its principal (a peer's HELLO): bump gen.
void zh_routes_touch (zh_routes_t *self);

//  Remove and destroy a connection (RT-1); its proc id is remembered as
//  gone (RT-2). why goes to the log line.
void zh_routes_remove (zh_routes_t *self, zh_conn_t *conn, const char *why);

//  A proc ended: its connection goes if it has one, else its id is only
//  remembered as gone.
void zh_routes_proc_gone (zh_routes_t *self, const char *proc_id);

//  Connections of one socket: first, then next until NULL. Do not add or
//  remove while iterating.
zh_conn_t *zh_routes_first (zh_routes_t *self, zh_sock_t sock);
zh_conn_t *zh_routes_next (zh_routes_t *self, zh_sock_t sock);
size_t zh_routes_count (zh_routes_t *self, zh_sock_t sock);

#endif
