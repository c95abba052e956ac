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
    request came over the control socket; they and list/status are served
    by zh_lifecycle.c, which may answer later (spawn answers at READY).
*/
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_broker_int.h"
#include "zh_log.h"
#include "zh_pack.h"

#define AGENT_ACTOR "host_agent"
#define AGENT_PORT  1

static const char *admin_ops[] = {"spawn", "stop", "kill", "stop_all", "shutdown"};

//  Operations --------------------------------------------------------------

static void
s_op_ping (zh_broker_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    zh_pack_str (pk, "ok");
    msgpack_pack_true (pk);
    zh_pack_str (pk, "host");
    zh_pack_str (pk, self->advertised[0]);
    zh_pack_str (pk, "incarnation");
    msgpack_pack_uint64 (pk, self->incarnation);
    zh_pack_str (pk, "version");
    zh_pack_str (pk, ZH_VERSION_STRING);
}

static void
s_pack_proc_counts (zh_broker_t *self, msgpack_packer *pk)
{
    size_t n = 0;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *c = (zh_conn_t *)zh_table_first (self->conns[s]); c;
             c = (zh_conn_t *)zh_table_next (self->conns[s]))
            if (c->proc_id_len || c->peer_endpoint) n++;
    msgpack_pack_map (pk, n);
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *c = (zh_conn_t *)zh_table_first (self->conns[s]); c;
             c = (zh_conn_t *)zh_table_next (self->conns[s])) {
            if (!c->proc_id_len && !c->peer_endpoint) continue;
            zh_pack_str (pk, c->proc_id_len ? c->proc_id : c->peer_endpoint);
            msgpack_pack_map (pk, 2);
            zh_pack_str (pk, "in");
            msgpack_pack_uint64 (pk, c->msgs_in);
            zh_pack_str (pk, "out");
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
    zh_pack_str (pk, "ok");
    msgpack_pack_true (pk);
    zh_pack_str (pk, "routed");
    msgpack_pack_uint64 (pk, st->routed);
    zh_pack_str (pk, "returned");
    msgpack_pack_map (pk, ZH_RC_COUNT);
    for (int rc = 0; rc < ZH_RC_COUNT; rc++) {
        zh_pack_str (pk, zh_rc_name ((zh_rc_t)rc));
        msgpack_pack_uint64 (pk, st->returned[rc]);
    }
    zh_pack_str (pk, "abandoned");
    msgpack_pack_uint64 (pk, st->abandoned);
    zh_pack_str (pk, "dropped");
    msgpack_pack_uint64 (pk, st->dropped);
    zh_pack_str (pk, "rejected");
    msgpack_pack_map (pk, ZH_REJECT_KINDS);
    for (int i = 0; i < ZH_REJECT_KINDS; i++) {
        char code[8];
        snprintf (code, sizeof code, "%d", zh_reject_codes[i]);
        zh_pack_str (pk, code);
        msgpack_pack_uint64 (pk, st->rejected[i]);
    }
    zh_pack_str (pk, "agent_requests");
    msgpack_pack_uint64 (pk, st->agent_requests);
    zh_pack_str (pk, "agent_unanswerable");
    msgpack_pack_uint64 (pk, st->agent_unanswerable);
    zh_pack_str (pk, "connections");
    msgpack_pack_uint64 (pk, connections);
    zh_pack_str (pk, "procs");
    s_pack_proc_counts (self, pk);
}

static const char *proc_ops[] = {"list", "status"};

//  Answer one decoded request into pk; false when the answer comes later
//  (a proc op that waits for a state change).
static bool
s_serve (zh_broker_t *self, const zh_conn_t *from, const msgpack_object *request, const char *reply,
         msgpack_packer *pk, char *op_name, size_t op_size)
{
    const msgpack_object *op = zh_map_get (request, "op");
    if (!op || op->type != MSGPACK_OBJECT_STR) {
        snprintf (op_name, op_size, "-");
        zh_pack_error (pk, "BAD_REQUEST", "the request must be a map with a string `op`");
        return true;
    }
    snprintf (op_name, op_size, "%.*s", (int)(op->via.str.size > 31 ? 31 : op->via.str.size),
              op->via.str.ptr);
    for (size_t i = 0; i < sizeof admin_ops / sizeof admin_ops[0]; i++)
        if (strcmp (op_name, admin_ops[i]) == 0) {
            if (!from || !from->admin) {
                zh_pack_error (pk, "NOT_ALLOWED",
                               "admin operations are allowed on the control socket only");
                return true;
            }
            if (self->stopping_children || self->shutting_down) {
                zh_pack_error (pk, "SHUTTING_DOWN", "the broker is shutting down");
                return true;
            }
            return zh_lifecycle_op (self, op_name, request, reply, pk);
        }
    for (size_t i = 0; i < sizeof proc_ops / sizeof proc_ops[0]; i++)
        if (strcmp (op_name, proc_ops[i]) == 0)
            return zh_lifecycle_op (self, op_name, request, reply, pk);
    if (strcmp (op_name, "ping") == 0)
        s_op_ping (self, pk);
    else if (strcmp (op_name, "stats") == 0)
        s_op_stats (self, pk);
    else {
        char message[96];
        snprintf (message, sizeof message, "unknown op '%s'", op_name);
        zh_pack_error (pk, "UNKNOWN_OP", message);
    }
    return true;
}

//  Send the answer (an inline part) to the reply port.
void
zh_agent_reply (zh_broker_t *self, const char *reply, size_t reply_len, const char *answer,
                size_t answer_size)
{
    size_t src_len = strlen (self->agent_addr);
    size_t size = zh_head_size (reply_len, src_len, 0, answer_size);
    zmq_msg_t msg;
    zmq_msg_init_size (&msg, size);
    long written = zh_head_write (
        (uint8_t *)zmq_msg_data (&msg), size, ZH_SEND, (uint8_t)self->config->ttl, ZH_FLAG_INLINE,
        reply, reply_len, self->agent_addr, src_len, NULL, 0, (const uint8_t *)answer, answer_size);
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
    if (head->hdr.command == ZH_RETURN) {
        //  Something the service proc sent came back undeliverable (an
        //  answer of the agent): nothing to retry, nobody to tell.
        self->stats.agent_unanswerable++;
        zh_info ("agent-return", "note=\"an answer of the host agent was undeliverable\"");
        return;
    }
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
    self->stats.agent_requests++;
    zh_span_t reply;
    zh_addr_t reply_addr;
    if (head->meta_len == 0 || zh_meta_find_reply (head->meta, head->meta_len, &reply) != 0 ||
        zh_addr_parse_kind (&reply_addr, ZH_ADDR_PORT, reply.ptr, reply.len, NULL) != 0) {
        self->stats.agent_unanswerable++;
        zh_info ("agent", "note=\"request without a valid reply port in meta: not answered\"");
        return;
    }
    //  The request is the first payload part.
    const char *part = NULL;
    size_t part_len = 0;
    if (head->hdr.flags & ZH_FLAG_INLINE) {
        part = (const char *)head->inline_part;
        part_len = head->inline_len;
    } else if (count > 1) {
        part = (const char *)zmq_msg_data (&frames[1]);
        part_len = zmq_msg_size (&frames[1]);
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    char op_name[32] = "-";
    char reply_text[ZH_ADDR_MAX + 1];
    snprintf (reply_text, sizeof reply_text, "%.*s", (int)reply.len, reply.ptr);
    size_t offset = 0;
    bool answered = true;
    if (!part ||
        msgpack_unpack_next (&unpacked, part, part_len, &offset) != MSGPACK_UNPACK_SUCCESS ||
        unpacked.data.type != MSGPACK_OBJECT_MAP)
        zh_pack_error (&pk, "BAD_REQUEST", "the first payload part must be a msgpack map");
    else
        answered = s_serve (self, from, &unpacked.data, reply_text, &pk, op_name, sizeof op_name);
    msgpack_unpacked_destroy (&unpacked);
    zh_debug ("agent", "op=%s from=%s", op_name, from ? from->proc_id : "-");
    if (answered) zh_agent_reply (self, reply.ptr, reply.len, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
}
