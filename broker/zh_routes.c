/*  zh_routes.c — the broker's connections and routes (see zh_routes.h).

    Where it sits: below the router, the handshakes and the lifecycle;
    above zh_table and zh_conn. Owns every zh_conn_t (RT-1).
*/
#include "zh_routes.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "zh_log.h"

zh_routes_t *
zh_routes_new (void)
{
    zh_routes_t *self = (zh_routes_t *)calloc (1, sizeof (zh_routes_t));
    if (!self) return NULL;
    bool ok = true;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        ok = ok && (self->conns[s] = zh_table_new ()) != NULL;
    self->routes = zh_table_new ();
    self->gone = zh_table_new ();
    if (!ok || !self->routes || !self->gone) zh_routes_destroy (&self);
    return self;
}

static void
s_destroy_conns (zh_table_t *table)
{
    zh_conn_t *conns[1024];
    while (zh_table_size (table)) {
        size_t n = 0;
        for (zh_conn_t *c = (zh_conn_t *)zh_table_first (table); c && n < 1024;
             c = (zh_conn_t *)zh_table_next (table))
            conns[n++] = c;
        for (size_t i = 0; i < n; i++) {
            zh_table_delete (table, conns[i]->rid, conns[i]->rid_len);
            zh_conn_destroy (&conns[i]);
        }
    }
}

void
zh_routes_destroy (zh_routes_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_routes_t *self = *self_p;
    zh_table_destroy (&self->routes); //  points into conns: no ownership
    for (int s = 0; s < ZH_SOCK_COUNT; s++) {
        if (self->conns[s]) s_destroy_conns (self->conns[s]);
        zh_table_destroy (&self->conns[s]);
    }
    zh_table_destroy (&self->gone);
    for (size_t i = 0; i < self->gone_count; i++)
        free (self->gone_ring[(self->gone_head + i) % ZH_GONE_MAX]);
    for (size_t i = 0; i < self->self_count; i++)
        free (self->self_eps[i]);
    free (self);
    *self_p = NULL;
}

int
zh_routes_add_self (zh_routes_t *self, const char *endpoint)
{
    size_t len = strlen (endpoint);
    if (zh_routes_is_self (self, endpoint, len)) return 0;
    if (self->self_count == ZH_SELF_MAX) return -1;
    char *copy = strdup (endpoint);
    if (!copy) return -1;
    self->self_eps[self->self_count] = copy;
    self->self_ep_lens[self->self_count] = len;
    self->self_count++;
    return 0;
}

//  ---------------------------------------------------------------------
//  Gone ids (RT-2)

static void
s_gone_remember (zh_routes_t *self, const char *proc_id, size_t len)
{
    if (zh_table_lookup (self->gone, proc_id, len)) return;
    if (self->gone_count == ZH_GONE_MAX) {
        //  Evict the oldest; its key goes only if the table still points at
        //  this slot (a name gone, spawned again and gone again has a newer
        //  slot, which keeps it).
        char *oldest = self->gone_ring[self->gone_head];
        size_t oldest_len = strlen (oldest);
        if (zh_table_lookup (self->gone, oldest, oldest_len) ==
            (void *)(uintptr_t)(self->gone_head + 1))
            zh_table_delete (self->gone, oldest, oldest_len);
        free (oldest);
        self->gone_ring[self->gone_head] = NULL;
        self->gone_head = (self->gone_head + 1) % ZH_GONE_MAX;
        self->gone_count--;
    }
    char *copy = (char *)malloc (len + 1);
    if (!copy) return; //  then it answers NO_SUCH_PROC: still a RETURN
    memcpy (copy, proc_id, len);
    copy[len] = 0;
    size_t slot = (self->gone_head + self->gone_count) % ZH_GONE_MAX;
    self->gone_ring[slot] = copy;
    self->gone_count++;
    zh_table_insert (self->gone, proc_id, len, (void *)(uintptr_t)(slot + 1));
}

bool
zh_routes_is_gone (zh_routes_t *self, const char *proc_id, size_t len)
{
    return zh_table_lookup (self->gone, proc_id, len) != NULL;
}

bool
zh_routes_id_taken (zh_routes_t *self, const char *proc_id, size_t len)
{
    return zh_table_lookup (self->routes, proc_id, len) || zh_routes_is_gone (self, proc_id, len);
}

//  ---------------------------------------------------------------------
//  Connections

void
zh_routes_remove (zh_routes_t *self, zh_conn_t *conn, const char *why)
{
    char name[ZH_ADDR_MAX + 1];
    zh_conn_name (conn, name, sizeof name);
    if (conn->proc_id_len) {
        if (zh_table_lookup (self->routes, conn->proc_id, conn->proc_id_len) == conn)
            zh_table_delete (self->routes, conn->proc_id, conn->proc_id_len);
        s_gone_remember (self, conn->proc_id, conn->proc_id_len);
    }
    zh_table_delete (self->conns[conn->sock], conn->rid, conn->rid_len);
    self->gen++; //  BR-5: no cache may point at it any more
    zh_info ("detach", "socket=%s proc=%s reason=%s in=%llu out=%llu", zh_sock_name (conn->sock),
             name, why, (unsigned long long)conn->msgs_in, (unsigned long long)conn->msgs_out);
    zh_conn_destroy (&conn);
}

int
zh_routes_add (zh_routes_t *self, zh_conn_t *conn)
{
    zh_conn_t *old =
        (zh_conn_t *)zh_table_lookup (self->conns[conn->sock], conn->rid, conn->rid_len);
    if (old) zh_routes_remove (self, old, "replaced");
    if (zh_table_insert (self->conns[conn->sock], conn->rid, conn->rid_len, conn) != 0) {
        zh_conn_destroy (&conn);
        return -1;
    }
    if (conn->proc_id_len) {
        zh_conn_t *routed = zh_routes_lookup (self, conn->proc_id, conn->proc_id_len);
        if (routed) zh_routes_remove (self, routed, "replaced");
        if (zh_table_insert (self->routes, conn->proc_id, conn->proc_id_len, conn) != 0) {
            zh_table_delete (self->conns[conn->sock], conn->rid, conn->rid_len);
            zh_conn_destroy (&conn);
            self->gen++;
            return -1;
        }
        //  Routed again: no longer gone (the ring keeps its copy; its
        //  eviction leaves the key alone unless the table points at it).
        zh_table_delete (self->gone, conn->proc_id, conn->proc_id_len);
    }
    self->gen++;
    return 0;
}

void
zh_routes_touch (zh_routes_t *self)
{
    self->gen++;
}

void
zh_routes_proc_gone (zh_routes_t *self, const char *proc_id)
{
    size_t len = strlen (proc_id);
    zh_conn_t *conn = zh_routes_lookup (self, proc_id, len);
    if (conn)
        zh_routes_remove (self, conn, "exited");
    else
        s_gone_remember (self, proc_id, len);
}

zh_conn_t *
zh_routes_first (zh_routes_t *self, zh_sock_t sock)
{
    return (zh_conn_t *)zh_table_first (self->conns[sock]);
}

zh_conn_t *
zh_routes_next (zh_routes_t *self, zh_sock_t sock)
{
    return (zh_conn_t *)zh_table_next (self->conns[sock]);
}

size_t
zh_routes_count (zh_routes_t *self, zh_sock_t sock)
{
    return zh_table_size (self->conns[sock]);
}
