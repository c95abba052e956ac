/*  zhost_request.c — request/reply over once-ports.

    Where it sits: on top of posting and dispatch. A request is a post
    whose meta `reply` names a fresh once-port of the requesting actor:

        request_async → open once-port → post (reply, seq, flagged) → pending list
        answer SEND to the once-port → port closes → cb (ZHOST_OK, msg)
        RETURN whose original meta `reply` is that port → cb (_RETURNED, u)
        deadline passed (loop timers)                 → cb (_TIMEOUT)
        proc stops or closes                          → cb (_STOPPED / _CLOSED)

    RQ-1 (exactly once): a request leaves the pending list before its
    callback runs, and its once-port is closed by then, so each outcome is
    reported once and a late answer finds no port (NO_SUCH_PORT back to
    the answerer, if it asked for RETURNs).

    The blocking form runs the loop (zhost_proc_step) until its callback
    has run: a handler that requests does not deadlock, and other messages
    are dispatched while it waits.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zhost_int.h"

static void
s_unlink (zhost_proc_t *self, zhost_request_t *req)
{
    for (zhost_request_t **p = &self->requests; *p; p = &(*p)->next)
        if (*p == req) {
            *p = req->next;
            return;
        }
}

static zhost_request_t *
s_find (zhost_proc_t *self, zhost_actor_t *actor, uint64_t port)
{
    for (zhost_request_t *req = self->requests; req; req = req->next)
        if (req->actor == actor && req->port == port) return req;
    return NULL;
}

//  RQ-1: unlink, close the port, then report.
static void
s_finish (zhost_proc_t *self, zhost_request_t *req, zhost_errno_t status, const zhost_msg_t *msg,
          const zhost_undeliverable_t *u)
{
    s_unlink (self, req);
    zhost_actor_close_port (req->actor, req->port);
    zhost_reply_fn *cb = req->cb;
    void *arg = req->arg;
    zhost_actor_t *actor = req->actor;
    free (req);
    cb (actor, status, msg, u, arg);
}

//  The once-port handler: the answer arrived (the port is closed already).
static int
s_on_answer (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    zhost_request_t *req = s_find (actor->proc, actor, msg->port);
    if (req) s_finish (actor->proc, req, ZHOST_OK, msg, NULL);
    return 0;
}

uint64_t
zhost_proc_request_async (zhost_proc_t *self, zhost_actor_t *from, const char *dest,
                          const zhost_part_t *parts, size_t count, int timeout_ms,
                          zhost_reply_fn *cb, void *arg)
{
    if (!from || !cb) return 0;
    zhost_request_t *req = (zhost_request_t *)calloc (1, sizeof (zhost_request_t));
    if (!req) return 0;
    uint64_t port = zhost_actor_open_once (from, s_on_answer, NULL);
    char reply[ZH_ADDR_MAX + 1];
    if (!port || zhost_actor_port_addr (from, port, reply, sizeof reply) < 0) {
        if (port) zhost_actor_close_port (from, port);
        free (req);
        return 0;
    }
    zhost_post_opts_t opts = {.reply = reply, .has_seq = true, .seq = ++self->next_seq};
    zhost_error_t err;
    if (zhost_proc_post (self, from, dest, parts, count, &opts, &err) != 0) {
        zh_warn ("request-failed", "actor=%s dest=%s reason=\"%s\"", from->addr, dest ? dest : "-",
                 err.message);
        zhost_actor_close_port (from, port);
        free (req);
        return 0;
    }
    *req = (zhost_request_t){self->requests, from, port, 0, cb, arg};
    if (timeout_ms > 0) req->deadline = zhost_now_ms () + timeout_ms;
    self->requests = req;
    return port;
}

bool
zhost_request_returned (zhost_proc_t *self, zhost_actor_t *actor, const zhost_undeliverable_t *u)
{
    const char *reply = u->msg->reply;
    zh_addr_t addr;
    zh_error_t perr;
    if (!reply || zh_addr_parse_kind (&addr, ZH_ADDR_PORT, reply, strlen (reply), &perr) != 0 ||
        addr.port < ZHOST_ONCE_PORT_BASE)
        return false;
    char mine[ZH_ADDR_MAX + 1];
    if (zhost_actor_port_addr (actor, addr.port, mine, sizeof mine) < 0 || strcmp (mine, reply))
        return false;
    zhost_request_t *req = s_find (self, actor, addr.port);
    if (!req) return false;
    s_finish (self, req, ZHOST_E_RETURNED, NULL, u);
    return true;
}

void
zhost_requests_expire (zhost_proc_t *self, int64_t now)
{
    bool again = true;
    while (again) { //  a callback may add or finish requests: rescan
        again = false;
        for (zhost_request_t *req = self->requests; req; req = req->next)
            if (req->deadline && now >= req->deadline) {
                s_finish (self, req, ZHOST_E_TIMEOUT, NULL, NULL);
                again = true;
                break;
            }
    }
}

void
zhost_requests_fail_all (zhost_proc_t *self, zhost_errno_t status, const char *why)
{
    while (self->requests)
        s_finish (self, self->requests, status, NULL, NULL);
}

int64_t
zhost_requests_next_deadline (zhost_proc_t *self)
{
    int64_t next = 0;
    for (zhost_request_t *req = self->requests; req; req = req->next)
        if (req->deadline && (!next || req->deadline < next)) next = req->deadline;
    return next;
}

//  ---------------------------------------------------------------------
//  Blocking form

typedef struct {
    bool done;
    zhost_reply_t *reply;
} s_wait_t;

//  Copy the answer's parts into one owned block: parts array, then bytes.
static void
s_copy_parts (zhost_reply_t *reply, const zhost_msg_t *msg)
{
    size_t total = msg->part_count * sizeof (zhost_part_t);
    for (size_t i = 0; i < msg->part_count; i++)
        total += msg->parts[i].size;
    zhost_part_t *parts = (zhost_part_t *)malloc (total ? total : 1);
    if (!parts) return;
    uint8_t *p = (uint8_t *)(parts + msg->part_count);
    for (size_t i = 0; i < msg->part_count; i++) {
        if (msg->parts[i].size) memcpy (p, msg->parts[i].data, msg->parts[i].size);
        parts[i] = (zhost_part_t){p, msg->parts[i].size};
        p += msg->parts[i].size;
    }
    reply->parts = parts;
    reply->part_count = msg->part_count;
}

static void
s_on_outcome (zhost_actor_t *actor, zhost_errno_t status, const zhost_msg_t *msg,
              const zhost_undeliverable_t *u, void *arg)
{
    s_wait_t *wait = (s_wait_t *)arg;
    zhost_reply_t *reply = wait->reply;
    wait->done = true;
    reply->status = status;
    if (status == ZHOST_OK) {
        snprintf (reply->src, sizeof reply->src, "%s", msg->src);
        s_copy_parts (reply, msg);
    } else if (status == ZHOST_E_RETURNED && u->failure_count) {
        snprintf (reply->code, sizeof reply->code, "%s", u->failures[0].code);
        snprintf (reply->reason, sizeof reply->reason, "%s", u->failures[0].reason);
    } else
        snprintf (reply->reason, sizeof reply->reason, "%s",
                  status == ZHOST_E_TIMEOUT  ? "no answer before the timeout"
                  : status == ZHOST_E_CLOSED ? "the broker closed the connection"
                                             : "the proc is stopping");
}

int
zhost_proc_request (zhost_proc_t *self, zhost_actor_t *from, const char *dest,
                    const zhost_part_t *parts, size_t count, int timeout_ms, zhost_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    s_wait_t wait = {false, reply};
    uint64_t port =
        zhost_proc_request_async (self, from, dest, parts, count, timeout_ms, s_on_outcome, &wait);
    if (!port) {
        reply->status = zhost_proc_open (self) ? ZHOST_E_INVALID : ZHOST_E_CLOSED;
        snprintf (reply->reason, sizeof reply->reason, "could not post the request to %s",
                  dest ? dest : "-");
        return -1;
    }
    while (!wait.done) {
        if (zhost_proc_step (self, -1) < 0 && !wait.done) break;
        if (self->stop_requested && !wait.done) break; //  PL-2: let the handler unwind
    }
    if (!wait.done) {
        zhost_request_t *req = s_find (self, from, port);
        if (req) s_finish (self, req, ZHOST_E_STOPPED, NULL, NULL);
    }
    return reply->status == ZHOST_OK ? 0 : -1;
}

void
zhost_reply_reset (zhost_reply_t *reply)
{
    free (reply->parts);
    reply->parts = NULL;
    reply->part_count = 0;
}
