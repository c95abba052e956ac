/*  zh_attach.c — handshakes and liveness (see zh_attach.h).

    Where it sits: below the router; above routes, send and lifecycle.
*/
#include "zh_attach.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "zh_log.h"

struct _zh_attach_t {
    const zh_config_t *config; //  heartbeat, liveness, limits for BOOTSTRAP
    const zh_self_t *me;       //  the broker: host, agent address, incarnation, phase
    zh_routes_t *routes;       //  connections come and go here
    zh_send_t *send;           //  BOOTSTRAP, WELCOME, ERROR, PONG, BYE
    zh_lifecycle_t *lifecycle; //  READY
    zh_curve_t *curve;         //  CURVE on the frontend (CU-2), or NULL
};

zh_attach_t *
zh_attach_new (const zh_config_t *config, const zh_self_t *me, zh_routes_t *routes, zh_send_t *send,
               zh_lifecycle_t *lifecycle, zh_curve_t *curve)
{
    zh_attach_t *self = (zh_attach_t *)calloc (1, sizeof (zh_attach_t));
    if (!self) return NULL;
    self->config = config;
    self->me = me;
    self->routes = routes;
    self->send = send;
    self->lifecycle = lifecycle;
    self->curve = curve;
    return self;
}

void
zh_attach_destroy (zh_attach_t **self_p)
{
    if (!self_p || !*self_p) return;
    free (*self_p);
    *self_p = NULL;
}

static void
s_reject (zh_attach_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len, int code,
          const char *reason)
{
    zh_send_error (self->send, sock, rid, rid_len, code, reason, NULL);
}

//  ---------------------------------------------------------------------
//  ATTACH → BOOTSTRAP

//  §14: the body asks for BATCH.
static bool
s_asks_batch (const zh_body_t *body)
{
    return (body->present & ZH_F_BATCH) && body->batch;
}

//  Encode the connection's BOOTSTRAP and keep it (resent on re-ATTACH).
//  0 or -1 (out of memory).
static int
s_bootstrap (zh_attach_t *self, zh_conn_t *conn)
{
    char proc_addr[ZH_ADDR_MAX + 1];
    zh_proc_addr_format (proc_addr, sizeof proc_addr, conn->proc_id, self->me->host);
    zh_body_t boot = {.command = ZH_BOOTSTRAP,
                      .present = ZH_F_PROC | ZH_F_HOST | ZH_F_AGENT | ZH_F_HEARTBEAT_MS |
                                 ZH_F_MAX_MSG_BYTES | ZH_F_HWM | ZH_F_INCARNATION | ZH_F_LIVENESS |
                                 ZH_F_BATCH | ZH_F_BATCH_MAX_BYTES,
                      .proc = zh_span_of (proc_addr),
                      .host = zh_span_of (self->me->host),
                      .agent = zh_span_of (self->me->agent_addr),
                      .heartbeat_ms = (uint64_t)self->config->heartbeat_ms,
                      .max_msg_bytes = (uint64_t)self->config->max_msg_bytes,
                      .hwm = (uint64_t)self->config->hwm,
                      .incarnation = self->me->incarnation,
                      .liveness = (uint64_t)self->config->liveness,
                      .batch = conn->batch,
                      .batch_max_bytes = (uint64_t)self->config->batch_max_bytes};
    size_t size = 0;
    uint8_t *bytes = zh_body_encode (&boot, &size);
    if (!bytes) return -1;
    zh_conn_set_bootstrap (conn, bytes, size);
    return 0;
}

static void
s_attach (zh_attach_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len, zh_conn_t *conn,
          const zh_body_t *body, const char *key, int64_t now)
{
    if (sock == ZH_SOCK_BACKEND) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED,
                  "ATTACH is for the frontend or control socket");
        return;
    }
    if (conn && conn->kind == ZH_CONN_CLIENT) {
        if (!zh_conn_key_matches (conn, key)) { //  AT-2
            s_reject (self, sock, rid, rid_len, ZH_ERR_FORBIDDEN,
                      "this routing id is attached under another CURVE key");
            return;
        }
        //  AT-1: a reconnect keeps its proc id: the same BOOTSTRAP again,
        //  but the latest ATTACH decides batching (§14).
        bool batch = s_asks_batch (body) && self->config->batch_max_bytes > 0;
        if (batch != conn->batch) {
            zh_conn_set_batch (conn, batch, (size_t)self->config->batch_max_bytes);
            if (s_bootstrap (self, conn) != 0) return;
        }
        zh_send_encoded (self->send, sock, rid, rid_len, ZH_BOOTSTRAP, conn->bootstrap,
                         conn->bootstrap_size);
        return;
    }
    if (conn) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED, "this connection is a peer broker");
        return;
    }
    if (self->curve && sock == ZH_SOCK_FRONTEND && !zh_curve_is_client (self->curve, key)) {
        //  CU-2: a peer broker's key is not a client's.
        s_reject (self, sock, rid, rid_len, ZH_ERR_FORBIDDEN,
                  "this key is a broker's (--curve-peers); ATTACH needs a client key");
        return;
    }
    char label[ZH_LABEL_MAX + 1] = "remote";
    if (body->present & ZH_F_LABEL) {
        zh_error_t err;
        if (zh_label_check (body->label.ptr, body->label.len, &err) != 0) {
            char reason[ZH_ERROR_REASON_MAX + 16];
            snprintf (reason, sizeof reason, "invalid label: %s", err.reason);
            s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED, reason);
            return;
        }
        snprintf (label, sizeof label, "%.*s", (int)body->label.len, body->label.ptr);
    }
    char proc_id[ZH_ID_MAX + 1];
    do
        zh_id_format (proc_id, sizeof proc_id, label, true, zh_random_u64 ());
    while (zh_routes_id_taken (self->routes, proc_id, strlen (proc_id)));

    conn = zh_conn_new (sock, ZH_CONN_CLIENT, rid, rid_len);
    if (!conn) return; //  out of memory: no BOOTSTRAP; the client retries
    zh_conn_set_proc_id (conn, proc_id);
    zh_conn_set_key (conn, key);
    conn->last_recv = conn->last_send = now;

    zh_conn_set_batch (conn, s_asks_batch (body), (size_t)self->config->batch_max_bytes);
    if (s_bootstrap (self, conn) != 0) {
        zh_conn_destroy (&conn);
        return;
    }
    if (zh_routes_add (self->routes, conn) != 0) return;
    zh_send_encoded (self->send, sock, rid, rid_len, ZH_BOOTSTRAP, conn->bootstrap,
                     conn->bootstrap_size);
    char q1[96];
    zh_info ("attach", "socket=%s proc=%s label=%s lang=%s pid=%lld curve_key=%s",
             zh_sock_name (sock), proc_id, label,
             (body->present & ZH_F_LANG)
                 ? zh_log_quote (q1, sizeof q1, body->lang.ptr, body->lang.len)
                 : "-",
             (body->present & ZH_F_PID) ? (long long)body->pid : -1LL, key && key[0] ? key : "-");
}

//  ---------------------------------------------------------------------
//  HELLO → WELCOME

static void
s_hello (zh_attach_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len, zh_conn_t *conn,
         const zh_body_t *body, const char *key, int64_t now)
{
    if (sock != ZH_SOCK_FRONTEND) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED, "HELLO is for the frontend");
        return;
    }
    zh_error_t err;
    if (zh_endpoint_check (body->endpoint.ptr, body->endpoint.len, &err) != 0) {
        char reason[ZH_ERROR_REASON_MAX + 16];
        snprintf (reason, sizeof reason, "HELLO endpoint: %s", err.reason);
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED, reason);
        return;
    }
    if (zh_routes_is_self (self->routes, body->endpoint.ptr, body->endpoint.len)) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED,
                  "HELLO endpoint is this broker's own");
        return;
    }
    if (conn && conn->kind != ZH_CONN_PEER) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED,
                  "this connection is an attached client");
        return;
    }
    if (self->curve) {
        //  CU-2: a peer is a key in --curve-peers, and only as its endpoint.
        const char *allowed = zh_curve_peer_endpoint (self->curve, key);
        const char *why = !allowed ? "HELLO needs a broker's key from --curve-peers"
                          : (strlen (allowed) != body->endpoint.len ||
                             memcmp (allowed, body->endpoint.ptr, body->endpoint.len) != 0)
                              ? "HELLO endpoint is not the one this key's certificate names"
                              : NULL;
        if (why) {
            char q1[96], q2[64];
            zh_warn ("peer-refused", "endpoint=%s key=%s reason=\"%s\"",
                     zh_log_quote (q1, sizeof q1, body->endpoint.ptr, body->endpoint.len),
                     zh_log_quote (q2, sizeof q2, key ? key : "", key ? strlen (key) : 0), why);
            s_reject (self, sock, rid, rid_len, ZH_ERR_FORBIDDEN, why);
            return;
        }
    }
    if (conn && !zh_conn_key_matches (conn, key)) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_FORBIDDEN,
                  "this routing id said HELLO under another CURVE key");
        return;
    }
    if (!conn) {
        conn = zh_conn_new (sock, ZH_CONN_PEER, rid, rid_len);
        if (!conn) return;
        zh_conn_set_key (conn, key);
        if (zh_conn_set_peer_endpoint (conn, body->endpoint.ptr, body->endpoint.len) != 0) {
            zh_conn_destroy (&conn);
            return;
        }
        if (zh_routes_add (self->routes, conn) != 0) return;
    } else {
        if (zh_conn_set_peer_endpoint (conn, body->endpoint.ptr, body->endpoint.len) != 0) return;
        zh_routes_touch (self->routes); //  a new principal: no cache may vouch for it
    }
    conn->last_recv = conn->last_send = now;
    //  §14: a peer that says batch may send us BATCH on its link.
    zh_conn_set_batch (conn, s_asks_batch (body), (size_t)self->config->batch_max_bytes);
    zh_body_t welcome = {.command = ZH_WELCOME,
                         .present =
                             ZH_F_ENDPOINT | ZH_F_INCARNATION | ZH_F_BATCH | ZH_F_BATCH_MAX_BYTES,
                         .endpoint = zh_span_of (self->me->host),
                         .incarnation = self->me->incarnation,
                         .batch = conn->batch,
                         .batch_max_bytes = (uint64_t)self->config->batch_max_bytes};
    zh_send_command (self->send, sock, rid, rid_len, ZH_WELCOME, &welcome);
    zh_info ("peer", "endpoint=%s incarnation=%llu", conn->peer_endpoint,
             (unsigned long long)body->incarnation);
}

//  ---------------------------------------------------------------------
//  Control commands

void
zh_attach_command (zh_attach_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                   zh_conn_t *conn, const zh_header_t *hdr, zmq_msg_t *frames, size_t count,
                   size_t total, const char *key, int64_t now)
{
    if (count > 2) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED, "extra frames after the body");
        return;
    }
    zh_body_t body;
    zh_error_t err;
    const uint8_t *data = count == 2 ? (const uint8_t *)zmq_msg_data (&frames[1]) : NULL;
    size_t size = count == 2 ? zmq_msg_size (&frames[1]) : 0;
    if (zh_body_decode (&body, hdr->command, data, size, &err) != 0) {
        s_reject (self, sock, rid, rid_len, err.code ? err.code : ZH_ERR_MALFORMED, err.reason);
        return;
    }
    if (total > (size_t)self->config->max_msg_bytes) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_TOO_LARGE,
                  "command is larger than max_msg_bytes");
        return;
    }
    switch (hdr->command) {
    case ZH_PING:
        zh_send_command (self->send, sock, rid, rid_len, ZH_PONG, NULL);
        if (conn) conn->last_send = now;
        return;
    case ZH_PONG:
        return;
    case ZH_BYE:
        //  Everything the client sent before BYE was routed already (one
        //  connection's messages are handled in order): answer, then detach.
        zh_send_bye (self->send, sock, rid, rid_len, "bye");
        if (conn) zh_routes_remove (self->routes, conn, "bye");
        return;
    case ZH_ERROR: {
        char name[96], q[ZH_ERROR_REASON_MAX * 2];
        if (conn) zh_conn_name (conn, name, sizeof name);
        zh_info ("peer-error", "socket=%s from=%s code=%lld reason=%s", zh_sock_name (sock),
                 conn ? name : "-", (long long)body.code,
                 zh_log_quote (q, sizeof q, body.reason.ptr, body.reason.len));
        return;
    }
    case ZH_READY:
        //  §6: READY only from a proc this broker is spawning, which is on
        //  the backend; from anyone else it is refused 403.
        if (sock != ZH_SOCK_BACKEND)
            s_reject (self, sock, rid, rid_len, ZH_ERR_FORBIDDEN,
                      "READY is accepted only from a proc this broker is spawning");
        else
            zh_lifecycle_ready (self->lifecycle, rid, rid_len, &body, now);
        return;
    default:
        break;
    }
    if (self->me->phase != ZH_PHASE_SERVING) {
        s_reject (self, sock, rid, rid_len, ZH_ERR_SHUTTING_DOWN, "the broker is shutting down");
        return;
    }
    if (hdr->command == ZH_ATTACH)
        s_attach (self, sock, rid, rid_len, conn, &body, key, now);
    else if (hdr->command == ZH_HELLO)
        s_hello (self, sock, rid, rid_len, conn, &body, key, now);
    else {
        char reason[64];
        snprintf (reason, sizeof reason, "%s is not accepted by a broker",
                  zh_command_name (hdr->command));
        s_reject (self, sock, rid, rid_len, ZH_ERR_MALFORMED, reason);
    }
}

//  ---------------------------------------------------------------------
//  Liveness

void
zh_attach_tick (zh_attach_t *self, int64_t now)
{
    int64_t hb = self->config->heartbeat_ms;
    int64_t expiry = hb * self->config->liveness;
    for (int s = 0; s < ZH_SOCK_COUNT; s++) {
        zh_sock_t sock = (zh_sock_t)s;
        //  AT-3 (busy is not silent): while the socket has unread input (a
        //  slow turn, e.g. a burst of spawns), its connections' last_recv is
        //  stale: nobody on it expires until it is drained.
        bool unread = zh_send_input_waiting (self->send, sock);
        zh_conn_t *expired[64];
        size_t n_expired = 0;
        for (zh_conn_t *conn = zh_routes_first (self->routes, sock); conn;
             conn = zh_routes_next (self->routes, sock)) {
            if (!unread && now - conn->last_recv >= expiry) {
                if (conn->kind == ZH_CONN_PROC) {
                    if (!conn->silent_logged)
                        zh_warn ("silent", "proc=%s silent_ms=%lld", conn->proc_id,
                                 (long long)(now - conn->last_recv));
                    conn->silent_logged = true;
                } else if (n_expired < 64)
                    expired[n_expired++] = conn; //  the rest at the next tick
                continue;
            }
            conn->silent_logged = false;
            if (now - conn->last_send >= hb) {
                zh_send_command (self->send, sock, conn->rid, conn->rid_len, ZH_PING, NULL);
                conn->last_send = now;
            }
        }
        for (size_t i = 0; i < n_expired; i++) {
            zh_send_bye (self->send, sock, expired[i]->rid, expired[i]->rid_len,
                         "heartbeat expired");
            zh_routes_remove (self->routes, expired[i], "heartbeat-expired");
        }
    }
}

void
zh_attach_bye_all (zh_attach_t *self, const char *reason)
{
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *conn = zh_routes_first (self->routes, (zh_sock_t)s); conn;
             conn = zh_routes_next (self->routes, (zh_sock_t)s))
            zh_send_bye (self->send, (zh_sock_t)s, conn->rid, conn->rid_len, reason);
}

//  A frontend connection's key still lets it be what it is (CU-1, CU-2).
static bool
s_key_still_ok (zh_attach_t *self, const zh_conn_t *conn)
{
    if (!conn->key[0]) return true; //  not a CURVE connection
    if (conn->kind == ZH_CONN_PEER) {
        const char *allowed = zh_curve_peer_endpoint (self->curve, conn->key);
        return allowed && conn->peer_endpoint && strlen (allowed) == conn->peer_endpoint_len &&
               memcmp (allowed, conn->peer_endpoint, conn->peer_endpoint_len) == 0;
    }
    return zh_curve_is_client (self->curve, conn->key);
}

size_t
zh_attach_revoke (zh_attach_t *self)
{
    if (!self->curve) return 0;
    //  The walk may not remove: note who goes, then remove them.
    size_t count = zh_routes_count (self->routes, ZH_SOCK_FRONTEND), gone = 0;
    zh_conn_t **going = count ? (zh_conn_t **)malloc (count * sizeof *going) : NULL;
    if (count && !going) return 0; //  out of memory: the next reload tries again
    for (zh_conn_t *conn = zh_routes_first (self->routes, ZH_SOCK_FRONTEND); conn;
         conn = zh_routes_next (self->routes, ZH_SOCK_FRONTEND))
        if (gone < count && !s_key_still_ok (self, conn)) going[gone++] = conn;
    for (size_t i = 0; i < gone; i++) {
        zh_conn_t *conn = going[i];
        char name[96];
        zh_info ("revoked", "conn=%s key=%s reason=\"its CURVE key is no longer allowed\"",
                 zh_conn_name (conn, name, sizeof name), conn->key);
        zh_send_bye (self->send, ZH_SOCK_FRONTEND, conn->rid, conn->rid_len, "CURVE key revoked");
        zh_routes_remove (self->routes, conn, "CURVE key revoked");
    }
    free (going);
    return gone;
}
