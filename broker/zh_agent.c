/*  zh_agent.c — the host agent: the control API on the service proc.

    Where it sits: zh_broker.c routes every SEND whose dest proc is
    `service` at a "self" endpoint here (never over a socket). The agent is
    the actor `host_agent.service@<endpoint>`, port 1 (PROTOCOL.md §8): a
    request's first payload part is a msgpack map {"op": str, …} and its
    meta names a `reply` port; the answer is a SEND to that port with one
    inline part, {"ok": true, …} or {"ok": false, "error": {code, message}}.

    Other actors of the service proc do not exist (NO_SUCH_ACTOR), other
    ports of the agent neither (NO_SUCH_PORT). Admin operations (spawn,
    stop, kill, stop_all, shutdown) are refused NOT_ALLOWED unless the
    request came over the control socket.
*/
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_broker_int.h"
#include "zh_log.h"

#define AGENT_ACTOR "host_agent"
#define AGENT_PORT 1

static const char *admin_ops[] = {"spawn", "stop", "kill", "stop_all", "shutdown"};

//  msgpack helpers --------------------------------------------------------

static void
s_pack_str (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, s, len);
}

static void
s_pack_error (msgpack_packer *pk, const char *code, const char *message)
{
    msgpack_pack_map (pk, 2);
    s_pack_str (pk, "ok");
    msgpack_pack_false (pk);
    s_pack_str (pk, "error");
    msgpack_pack_map (pk, 2);
    s_pack_str (pk, "code");
    s_pack_str (pk, code);
    s_pack_str (pk, "message");
    s_pack_str (pk, message);
}

//  The value of a string key in a msgpack map object, or NULL.
static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
            && memcmp (k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

//  Operations --------------------------------------------------------------

static void
s_op_ping (zh_broker_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    s_pack_str (pk, "ok");
    msgpack_pack_true (pk);
    s_pack_str (pk, "host");
    s_pack_str (pk, self->advertised[0]);
    s_pack_str (pk, "incarnation");
    msgpack_pack_uint64 (pk, self->incarnation);
    s_pack_str (pk, "version");
    s_pack_str (pk, ZH_VERSION_STRING);
}

static void
s_op_list (zh_broker_t *self, msgpack_packer *pk)
{
    //  Spawned procs are listed here once the process manager exists.
    msgpack_pack_map (pk, 2);
    s_pack_str (pk, "ok");
    msgpack_pack_true (pk);
    s_pack_str (pk, "procs");
    msgpack_pack_array (pk, 0);
}

static void
s_op_status (zh_broker_t *self, msgpack_packer *pk, const msgpack_object *request)
{
    const msgpack_object *name = s_map_get (request, "name");
    if (!name || name->type != MSGPACK_OBJECT_STR) {
        s_pack_error (pk, "BAD_REQUEST", "status needs a string `name`");
        return;
    }
    char message[160];
    snprintf (message, sizeof message, "no spawned proc named '%.*s'",
              (int) (name->via.str.size > 80 ? 80 : name->via.str.size), name->via.str.ptr);
    s_pack_error (pk, "NO_SUCH_PROC", message);
}

static void
s_pack_proc_counts (zh_broker_t *self, msgpack_packer *pk)
{
    size_t n = 0;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *c = (zh_conn_t *) zh_table_first (self->conns[s]); c;
             c = (zh_conn_t *) zh_table_next (self->conns[s]))
            if (c->proc_id_len || c->peer_endpoint)
                n++;
    msgpack_pack_map (pk, n);
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *c = (zh_conn_t *) zh_table_first (self->conns[s]); c;
             c = (zh_conn_t *) zh_table_next (self->conns[s])) {
            if (!c->proc_id_len && !c->peer_endpoint)
                continue;
            s_pack_str (pk, c->proc_id_len ? c->proc_id : c->peer_endpoint);
            msgpack_pack_map (pk, 2);
            s_pack_str (pk, "in");
            msgpack_pack_uint64 (pk, c->msgs_in);
            s_pack_str (pk, "out");
            msgpack_pack_uint64 (pk, c->msgs_out);
        }
}

static void
s_op_stats (zh_broker_t *self, msgpack_packer *pk)
{
    const zh_stats_t *st = &self->stats;
    size_t connections = 0;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        connections += zh_table_size (self->conns[s]);
    msgpack_pack_map (pk, 10);
    s_pack_str (pk, "ok");
    msgpack_pack_true (pk);
    s_pack_str (pk, "routed");
    msgpack_pack_uint64 (pk, st->routed);
    s_pack_str (pk, "returned");
    msgpack_pack_map (pk, ZH_RC_COUNT);
    for (int rc = 0; rc < ZH_RC_COUNT; rc++) {
        s_pack_str (pk, zh_rc_name ((zh_rc_t) rc));
        msgpack_pack_uint64 (pk, st->returned[rc]);
    }
    s_pack_str (pk, "abandoned");
    msgpack_pack_uint64 (pk, st->abandoned);
    s_pack_str (pk, "dropped");
    msgpack_pack_uint64 (pk, st->dropped);
    s_pack_str (pk, "rejected");
    msgpack_pack_map (pk, ZH_REJECT_KINDS);
    for (int i = 0; i < ZH_REJECT_KINDS; i++) {
        char code[8];
        snprintf (code, sizeof code, "%d", zh_reject_codes[i]);
        s_pack_str (pk, code);
        msgpack_pack_uint64 (pk, st->rejected[i]);
    }
    s_pack_str (pk, "agent_requests");
    msgpack_pack_uint64 (pk, st->agent_requests);
    s_pack_str (pk, "agent_unanswerable");
    msgpack_pack_uint64 (pk, st->agent_unanswerable);
    s_pack_str (pk, "connections");
    msgpack_pack_uint64 (pk, connections);
    s_pack_str (pk, "procs");
    s_pack_proc_counts (self, pk);
}

//  Answer one decoded request into pk.
static void
s_serve (zh_broker_t *self, const zh_conn_t *from, const msgpack_object *request,
         msgpack_packer *pk, char *op_name, size_t op_size)
{
    const msgpack_object *op = s_map_get (request, "op");
    if (!op || op->type != MSGPACK_OBJECT_STR) {
        snprintf (op_name, op_size, "-");
        s_pack_error (pk, "BAD_REQUEST", "the request must be a map with a string `op`");
        return;
    }
    snprintf (op_name, op_size, "%.*s", (int) (op->via.str.size > 31 ? 31 : op->via.str.size),
              op->via.str.ptr);
    for (size_t i = 0; i < sizeof admin_ops / sizeof admin_ops[0]; i++)
        if (strcmp (op_name, admin_ops[i]) == 0) {
            if (!from || !from->admin)
                s_pack_error (pk, "NOT_ALLOWED",
                              "admin operations are allowed on the control socket only");
            else
                s_pack_error (pk, "NOT_IMPLEMENTED",
                              "the process manager is not implemented yet");
            return;
        }
    if (strcmp (op_name, "ping") == 0)
        s_op_ping (self, pk);
    else if (strcmp (op_name, "list") == 0)
        s_op_list (self, pk);
    else if (strcmp (op_name, "status") == 0)
        s_op_status (self, pk, request);
    else if (strcmp (op_name, "stats") == 0)
        s_op_stats (self, pk);
    else {
        char message[96];
        snprintf (message, sizeof message, "unknown op '%s'", op_name);
        s_pack_error (pk, "UNKNOWN_OP", message);
    }
}

//  Send the answer (an inline part) to the reply port.
static void
s_reply (zh_broker_t *self, zh_span_t reply, const char *answer, size_t answer_size)
{
    size_t src_len = strlen (self->agent_addr);
    size_t size = zh_head_size (reply.len, src_len, 0, answer_size);
    zmq_msg_t msg;
    zmq_msg_init_size (&msg, size);
    long written = zh_head_write ((uint8_t *) zmq_msg_data (&msg), size, ZH_SEND,
                                  (uint8_t) self->config->ttl, ZH_FLAG_INLINE, reply.ptr,
                                  reply.len, self->agent_addr, src_len, NULL, 0,
                                  (const uint8_t *) answer, answer_size);
    if (written < 0) {
        zmq_msg_close (&msg);
        self->stats.agent_unanswerable++;
        return;
    }
    zh_broker_route_internal (self, &msg, 1);
    zmq_msg_close (&msg);
}

void
zh_agent_deliver (zh_broker_t *self, zh_conn_t *from, zmq_msg_t *frames, size_t count,
                  const zh_head_t *head, const zh_addr_t *dest)
{
    if (dest->kind == ZH_ADDR_PROC || !zh_span_eq (dest->actor.text, AGENT_ACTOR)) {
        zh_broker_bounce (self, from, frames, count, head, ZH_RC_NO_SUCH_ACTOR,
                          "the service proc has no such actor");
        return;
    }
    if (dest->kind != ZH_ADDR_PORT || dest->port != AGENT_PORT) {
        zh_broker_bounce (self, from, frames, count, head, ZH_RC_NO_SUCH_PORT,
                          "host_agent serves port 1 only");
        return;
    }
    if (head->hdr.command == ZH_RETURN) {
        //  One of our answers came back undeliverable: nothing to retry.
        self->stats.agent_unanswerable++;
        zh_info ("agent-return", "note=\"an answer of the host agent was undeliverable\"");
        return;
    }
    self->stats.agent_requests++;
    zh_span_t reply;
    zh_addr_t reply_addr;
    if (head->meta_len == 0 || zh_meta_find_reply (head->meta, head->meta_len, &reply) != 0
        || zh_addr_parse_kind (&reply_addr, ZH_ADDR_PORT, reply.ptr, reply.len, NULL) != 0) {
        self->stats.agent_unanswerable++;
        zh_info ("agent", "note=\"request without a valid reply port in meta: not answered\"");
        return;
    }
    //  The request is the first payload part.
    const char *part = NULL;
    size_t part_len = 0;
    if (head->hdr.flags & ZH_FLAG_INLINE) {
        part = (const char *) head->inline_part;
        part_len = head->inline_len;
    }
    else if (count > 1) {
        part = (const char *) zmq_msg_data (&frames[1]);
        part_len = zmq_msg_size (&frames[1]);
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    char op_name[32] = "-";
    size_t offset = 0;
    if (!part || msgpack_unpack_next (&unpacked, part, part_len, &offset) != MSGPACK_UNPACK_SUCCESS
        || unpacked.data.type != MSGPACK_OBJECT_MAP)
        s_pack_error (&pk, "BAD_REQUEST", "the first payload part must be a msgpack map");
    else
        s_serve (self, from, &unpacked.data, &pk, op_name, sizeof op_name);
    msgpack_unpacked_destroy (&unpacked);
    zh_debug ("agent", "op=%s from=%s", op_name, from ? from->proc_id : "-");
    s_reply (self, reply, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
}
