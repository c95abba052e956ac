/*  zh_conn.c — one peer of one broker socket (see zh_conn.h).

    Where it sits: a record the routes own (zh_routes.c makes and destroys
    them); the router and the handshakes read and fill its fields.
*/
#include "zh_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

zh_conn_t *
zh_conn_new (zh_sock_t sock, zh_conn_kind_t kind, const uint8_t *rid, size_t rid_len)
{
    if (rid_len > ZH_RID_MAX) return NULL;
    zh_conn_t *self = (zh_conn_t *)calloc (1, sizeof (zh_conn_t));
    if (!self) return NULL;
    self->sock = sock;
    self->kind = kind;
    memcpy (self->rid, rid, rid_len);
    self->rid_len = rid_len;
    return self;
}

void
zh_conn_destroy (zh_conn_t **self_p)
{
    if (self_p && *self_p) {
        zh_conn_t *self = *self_p;
        free (self->peer_endpoint);
        free (self->bootstrap);
        zh_coalesce_destroy (&self->out);
        free (self);
        *self_p = NULL;
    }
}

void
zh_conn_set_proc_id (zh_conn_t *self, const char *proc_id)
{
    snprintf (self->proc_id, sizeof self->proc_id, "%s", proc_id);
    self->proc_id_len = strlen (self->proc_id);
    self->src_cache_len = 0; //  a new principal: nothing is vouched for
}

void
zh_conn_set_key (zh_conn_t *self, const char *key)
{
    snprintf (self->key, sizeof self->key, "%s", key ? key : "");
}

bool
zh_conn_key_matches (const zh_conn_t *self, const char *key)
{
    return strcmp (self->key, key ? key : "") == 0;
}

int
zh_conn_set_peer_endpoint (zh_conn_t *self, const char *endpoint, size_t len)
{
    char *copy = (char *)malloc (len + 1);
    if (!copy) return -1;
    memcpy (copy, endpoint, len);
    copy[len] = 0;
    free (self->peer_endpoint);
    self->peer_endpoint = copy;
    self->peer_endpoint_len = len;
    self->src_cache_len = 0; //  a new principal: nothing is vouched for
    return 0;
}

void
zh_conn_set_batch (zh_conn_t *self, bool batch, size_t batch_max)
{
    self->batch = batch && batch_max > 0;
    if (self->out && (!self->batch || batch_max != self->batch_max) &&
        zh_coalesce_count (self->out) == 0)
        zh_coalesce_destroy (&self->out); //  made again with the new bound on next use
    self->batch_max = self->batch ? batch_max : 0;
}

void
zh_conn_set_bootstrap (zh_conn_t *self, uint8_t *body, size_t size)
{
    free (self->bootstrap);
    self->bootstrap = body;
    self->bootstrap_size = size;
}

const char *
zh_conn_name (const zh_conn_t *self, char *buf, size_t size)
{
    if (self->proc_id_len)
        snprintf (buf, size, "%s", self->proc_id);
    else if (self->peer_endpoint)
        snprintf (buf, size, "%s", self->peer_endpoint);
    else {
        size_t pos = 0;
        buf[0] = 0;
        for (size_t i = 0; i < self->rid_len && pos + 3 < size; i++)
            pos += (size_t)snprintf (buf + pos, size - pos, "%02x", self->rid[i]);
    }
    return buf;
}

const char *
zh_sock_name (zh_sock_t sock)
{
    static const char *names[ZH_SOCK_COUNT] = {"frontend", "backend", "control"};
    return (unsigned)sock < ZH_SOCK_COUNT ? names[sock] : "?";
}
