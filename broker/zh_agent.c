/*  zh_agent.c — the host agent: the control API on the service proc (see
    zh_agent.h).

    Where it sits: below the router, which hands it requests; above the
    lifecycle (proc ops), the routes and counters (stats), and the sender
    (answers go to the outbox, refusals straight back as ERROR or RETURN).
*/
#include "zh_agent.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_log.h"
#include "zh_pack.h"

#define AGENT_ACTOR "host_agent"
#define AGENT_PORT  1

struct _zh_agent_t {
    const zh_config_t *config; //  the effective settings (config op)
    const zh_self_t *me;       //  the broker: host, agent address, incarnation, phase
    zh_routes_t *routes;       //  connections, for stats
    zh_peers_t *peers;         //  links to other brokers, for stats
    zh_send_t *send;           //  answers, refusals
    zh_stats_t *stats;         //  the counters
    zh_lifecycle_t *lifecycle; //  proc ops
    zh_agent_events_t events;  //  upward: shutdown
};

static const char *s_admin_ops[] = {"spawn", "stop", "kill", "stop_all", "shutdown", "logs"};
static const char *s_proc_ops[] = {"list", "status", "watch", "unwatch"};

zh_agent_t *
zh_agent_new (const zh_config_t *config, const zh_self_t *me, zh_routes_t *routes,
              zh_peers_t *peers, zh_send_t *send, zh_stats_t *stats, zh_lifecycle_t *lifecycle,
              zh_agent_events_t events)
{
    zh_agent_t *self = (zh_agent_t *)calloc (1, sizeof (zh_agent_t));
    if (!self) return NULL;
    self->config = config;
    self->me = me;
    self->routes = routes;
    self->peers = peers;
    self->send = send;
    self->stats = stats;
    self->lifecycle = lifecycle;
    self->events = events;
    return self;
}

void
zh_agent_destroy (zh_agent_t **self_p)
{
    if (!self_p || !*self_p) return;
    free (*self_p);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Operations

static void
s_op_ping (zh_agent_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    zh_pack_kv_bool (pk, "ok", true);
    zh_pack_kv_str (pk, "host", self->me->host);
    zh_pack_kv_uint (pk, "incarnation", self->me->incarnation);
    zh_pack_kv_str (pk, "version", ZH_VERSION_STRING);
}

//  {name: {in, out}} for every connection with a principal.
static void
s_pack_proc_counts (zh_agent_t *self, msgpack_packer *pk)
{
    size_t n = 0;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *c = zh_routes_first (self->routes, (zh_sock_t)s); c;
             c = zh_routes_next (self->routes, (zh_sock_t)s))
            if (c->proc_id_len || c->peer_endpoint) n++;
    msgpack_pack_map (pk, n);
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *c = zh_routes_first (self->routes, (zh_sock_t)s); c;
             c = zh_routes_next (self->routes, (zh_sock_t)s)) {
            if (!c->proc_id_len && !c->peer_endpoint) continue;
            zh_pack_str (pk, c->proc_id_len ? c->proc_id : c->peer_endpoint);
            msgpack_pack_map (pk, 2);
            zh_pack_kv_uint (pk, "in", c->msgs_in);
            zh_pack_kv_uint (pk, "out", c->msgs_out);
        }
}

static void
s_op_stats (zh_agent_t *self, msgpack_packer *pk)
{
    size_t connections = 0;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        connections += zh_routes_count (self->routes, (zh_sock_t)s);
    msgpack_pack_map (pk, 1 + ZH_STATS_PAIRS + 3);
    zh_pack_kv_bool (pk, "ok", true);
    zh_stats_pack (self->stats, pk);
    zh_pack_kv_uint (pk, "connections", connections);
    zh_pack_str (pk, "procs");
    s_pack_proc_counts (self, pk);
    zh_pack_str (pk, "peers");
    zh_peers_pack (self->peers, pk);
}

static void
s_count_setting (void *arg, const char *key, const char *value, zh_source_t source)
{
    (void)key, (void)value, (void)source;
    (*(size_t *)arg)++;
}

static void
s_pack_setting (void *arg, const char *key, const char *value, zh_source_t source)
{
    msgpack_packer *pk = (msgpack_packer *)arg;
    msgpack_pack_map (pk, 3);
    zh_pack_kv_str (pk, "key", key);
    zh_pack_kv_str (pk, "value", value);
    zh_pack_kv_str (pk, "source", zh_source_name (source));
}

//  config: every effective setting and where it came from (secrets are
//  file paths: the settings never hold a key itself).
static void
s_op_config (zh_agent_t *self, msgpack_packer *pk)
{
    size_t n = 0;
    zh_config_each (self->config, s_count_setting, &n);
    msgpack_pack_map (pk, 3);
    zh_pack_kv_bool (pk, "ok", true);
    zh_pack_kv_str (pk, "file", self->config->config_file ? self->config->config_file : "");
    zh_pack_str (pk, "settings");
    msgpack_pack_array (pk, n);
    zh_config_each (self->config, s_pack_setting, pk);
}

static bool
s_in (const char *op, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp (op, list[i]) == 0) return true;
    return false;
}

//  Answer one decoded request into pk; false when the answer comes later
//  (a proc op that waits for a state change, or the shutdown).
static bool
s_serve (zh_agent_t *self, const msgpack_object *args, const zh_request_t *request,
         msgpack_packer *pk, char *op_name, size_t op_size, int64_t now)
{
    const msgpack_object *op = zh_map_get (args, "op");
    if (!op || op->type != MSGPACK_OBJECT_STR) {
        snprintf (op_name, op_size, "-");
        zh_pack_error (pk, "BAD_REQUEST", "the request must be a map with a string `op`");
        return true;
    }
    snprintf (op_name, op_size, "%.*s", (int)(op->via.str.size > 31 ? 31 : op->via.str.size),
              op->via.str.ptr);
    if (s_in (op_name, s_admin_ops, sizeof s_admin_ops / sizeof s_admin_ops[0])) {
        if (!request->admin) { //  AG-1
            zh_pack_error (pk, "NOT_ALLOWED",
                           "admin operations are allowed on the control socket, or on the "
                           "frontend for a --curve-admin key");
            return true;
        }
        if (self->me->phase != ZH_PHASE_SERVING) {
            zh_pack_error (pk, "SHUTTING_DOWN", "the broker is shutting down");
            return true;
        }
        if (strcmp (op_name, "shutdown") == 0) {
            int64_t timeout = zh_map_get_uint (args, "timeout_ms");
            int64_t max_in_flight = zh_map_get_uint (args, "max_in_flight");
            if (timeout == -2 || max_in_flight == -2 || max_in_flight == 0) {
                zh_pack_error (pk, "BAD_REQUEST",
                               "`timeout_ms` must be >= 0 and `max_in_flight` >= 1 (integers)");
                return true;
            }
            self->events.shutdown (self->events.arg, request, timeout, max_in_flight);
            return false;
        }
        return zh_lifecycle_op (self->lifecycle, op_name, args, request, pk, now);
    }
    if (s_in (op_name, s_proc_ops, sizeof s_proc_ops / sizeof s_proc_ops[0]))
        return zh_lifecycle_op (self->lifecycle, op_name, args, request, pk, now);
    if (strcmp (op_name, "ping") == 0)
        s_op_ping (self, pk);
    else if (strcmp (op_name, "stats") == 0)
        s_op_stats (self, pk);
    else if (strcmp (op_name, "config") == 0)
        s_op_config (self, pk);
    else {
        char message[96];
        snprintf (message, sizeof message, "unknown op '%s'", op_name);
        zh_pack_error (pk, "UNKNOWN_OP", message);
    }
    return true;
}

//  ---------------------------------------------------------------------
//  Delivery

//  The request: the first payload part.
static void
s_request_part (const zh_head_t *head, zmq_msg_t *frames, size_t count, const uint8_t **part,
                size_t *len)
{
    *part = NULL;
    *len = 0;
    if (head->hdr.flags & ZH_FLAG_INLINE) {
        *part = head->inline_part;
        *len = head->inline_len;
    } else if (count > 1) {
        *part = (const uint8_t *)zmq_msg_data (&frames[1]);
        *len = zmq_msg_size (&frames[1]);
    }
}

void
zh_agent_deliver (zh_agent_t *self, zh_conn_t *from, bool admin, zmq_msg_t *frames, size_t count,
                  const zh_head_t *head, const zh_addr_t *dest, int64_t now)
{
    if (head->hdr.command == ZH_RETURN) {
        //  Something the service proc sent came back undeliverable (an
        //  answer of the agent): nothing to retry, nobody to tell.
        self->stats->agent_unanswerable++;
        zh_info ("agent-return", "note=\"an answer of the host agent was undeliverable\"");
        return;
    }
    if (dest->kind == ZH_ADDR_PROC || !zh_span_eq (dest->actor.text, AGENT_ACTOR)) {
        zh_send_return (self->send, from, frames, count, head, ZH_RC_NO_SUCH_ACTOR,
                        "the service proc has no such actor", now);
        return;
    }
    if (dest->kind != ZH_ADDR_PORT || dest->port != AGENT_PORT) {
        zh_send_return (self->send, from, frames, count, head, ZH_RC_NO_SUCH_PORT,
                        "host_agent serves port 1 only", now);
        return;
    }
    self->stats->agent_requests++;
    zh_span_t reply;
    zh_addr_t reply_addr;
    if (head->meta_len == 0 || zh_meta_find_reply (head->meta, head->meta_len, &reply) != 0 ||
        zh_addr_parse_kind (&reply_addr, ZH_ADDR_PORT, reply.ptr, reply.len, NULL) != 0) {
        self->stats->agent_unanswerable++;
        zh_info ("agent", "note=\"request without a valid reply port in meta: not answered\"");
        return;
    }
    if (!zh_routes_principal_ok (self->routes, from, &reply_addr)) { //  AG-2
        char name[ZH_ADDR_MAX + 1], q[ZH_ADDR_MAX + 8];
        self->stats->agent_refused++;
        zh_warn ("agent-refused", "from=%s reply=%s note=\"reply is not the requester's own\"",
                 zh_conn_name (from, name, sizeof name),
                 zh_log_quote (q, sizeof q, reply.ptr, reply.len));
        zh_send_error (self->send, from->sock, from->rid, from->rid_len, ZH_ERR_FORBIDDEN,
                       "reply must be a port of the requester's own proc", head);
        return;
    }
    zh_request_t request = {.admin = admin, .from = from};
    request.has_seq = zh_meta_find_seq (head->meta, head->meta_len, &request.seq) == 0;
    char reply_text[ZH_ADDR_MAX + 1];
    snprintf (reply_text, sizeof reply_text, "%.*s", (int)reply.len, reply.ptr);
    request.reply = reply_text;

    const uint8_t *part;
    size_t part_len;
    s_request_part (head, frames, count, &part, &part_len);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_zone zone;
    bool zone_ok = msgpack_zone_init (&zone, 2048);
    msgpack_object args;
    char op_name[32] = "-";
    bool answered = true;
    if (!zone_ok)
        zh_pack_error (&pk, "INTERNAL", "out of memory");
    else if (!part || part_len > ZH_AGENT_REQUEST_MAX ||
             zh_msgpack_unpack (part, part_len, &zone, &args) != 0 || //  AG-3
             args.type != MSGPACK_OBJECT_MAP)
        zh_pack_error (&pk, "BAD_REQUEST",
                       "the first payload part must be one well-formed msgpack map of at most "
                       "256 KiB");
    else
        answered = s_serve (self, &args, &request, &pk, op_name, sizeof op_name, now);
    if (zone_ok) msgpack_zone_destroy (&zone);
    zh_debug ("agent", "op=%s from=%s admin=%s", op_name, from->proc_id, admin ? "yes" : "no");
    if (answered)
        zh_send_answer (self->send, reply.ptr, reply.len, self->me->agent_addr,
                        request.has_seq ? &request.seq : NULL, (const uint8_t *)buffer.data,
                        buffer.size);
    msgpack_sbuffer_destroy (&buffer);
}
