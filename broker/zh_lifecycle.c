/*  zh_lifecycle.c — procs as the broker sees them (see zh_lifecycle.h).

    Where it sits: between the host agent and the handshakes above, the
    process manager below. A request that cannot be answered at once
    (spawn waits for READY, stop and kill wait for the end) leaves a
    waiter under the proc's name: its reply port and seq. The manager's
    state events answer the waiters (posted to the outbox), give a ready
    proc its route, and take the route of an ended one away.
*/
#include "zh_lifecycle.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_log.h"
#include "zh_pack.h"

//  An agent request waiting for a proc to change state.
typedef enum { S_WAIT_SPAWN = 1, S_WAIT_END } s_wait_kind_t;
typedef struct _s_waiter_t {
    s_wait_kind_t kind;       //  spawn: ready or an end; stop/kill: an end
    char *reply;              //  where the answer goes
    bool has_seq;             //  echo seq in the answer's meta
    int64_t seq;              //  the request's seq
    struct _s_waiter_t *next; //  the next waiter of the same proc
} s_waiter_t;

//  A bulk stop waiting for its end (the tag zh_procs hands back).
typedef struct {
    char *reply;   //  NULL: nobody to answer (a signal's shutdown)
    bool has_seq;  //  echo seq
    int64_t seq;   //  the request's seq
    bool shutdown; //  children_stopped follows the answer
} s_job_t;

struct _zh_lifecycle_t {
    const zh_config_t *config;    //  ready/terminate timeouts, max in flight
    zh_routes_t *routes;          //  ready procs get a route here (LC-2)
    zh_send_t *send;              //  STOP, ERROR, and the outbox for answers
    char *agent_addr;             //  src of the answers
    zh_procs_t *procs;            //  the process manager
    zh_watch_t *watch;            //  watchers: proc events and output lines
    zhashx_t *waiters;            //  proc name → s_waiter_t list
    zh_lifecycle_events_t events; //  upward: children_stopped
    int64_t now;                  //  the clock of the call in progress
};

//  ---------------------------------------------------------------------
//  Answers

//  The list entry of a proc: {name, proc, status, pid, exit_code? |
//  signal?, core_dumped? | reason?, detail?}.
static void
s_pack_proc (msgpack_packer *pk, const zh_proc_t *proc)
{
    size_t n = 4;
    if (proc->state == ZH_PS_STOPPED) n += 1;
    if (proc->state == ZH_PS_KILLED || proc->state == ZH_PS_FAILED) n += 2;
    msgpack_pack_map (pk, n);
    zh_pack_str (pk, "name");
    zh_pack_str (pk, proc->name);
    zh_pack_str (pk, "proc");
    zh_pack_str (pk, proc->proc_addr);
    zh_pack_str (pk, "status");
    zh_pack_str (pk, zh_pstate_name (proc->state));
    zh_pack_str (pk, "pid");
    msgpack_pack_int64 (pk, (int64_t)proc->pid);
    if (proc->state == ZH_PS_STOPPED) {
        zh_pack_str (pk, "exit_code");
        msgpack_pack_int (pk, proc->exit_code);
    } else if (proc->state == ZH_PS_KILLED) {
        zh_pack_str (pk, "signal");
        msgpack_pack_int (pk, proc->signal);
        zh_pack_str (pk, "core_dumped");
        proc->core_dumped ? msgpack_pack_true (pk) : msgpack_pack_false (pk);
    } else if (proc->state == ZH_PS_FAILED) {
        //  reason is the code word (READY_TIMEOUT, …), detail the sentence.
        zh_pack_kv_str (pk, "reason", proc->reason_word);
        zh_pack_kv_str (pk, "detail", proc->reason);
    }
}

//  {"ok": true, "status": …, "proc": entry}: the answer of stop and kill.
static void
s_pack_end (msgpack_packer *pk, const zh_proc_t *proc)
{
    msgpack_pack_map (pk, 3);
    zh_pack_str (pk, "ok");
    msgpack_pack_true (pk);
    zh_pack_str (pk, "status");
    zh_pack_str (pk, zh_pstate_name (proc->state));
    zh_pack_str (pk, "proc");
    s_pack_proc (pk, proc);
}

//  A one-line account of how a proc ended, with its output tail.
static void
s_describe_end (const zh_proc_t *proc, char *buf, size_t size)
{
    char tail[2048];
    zh_proc_tail (proc, tail, sizeof tail);
    int n;
    if (proc->state == ZH_PS_STOPPED)
        n = snprintf (buf, size, "'%s' exited with code %d before READY", proc->name,
                      proc->exit_code);
    else if (proc->state == ZH_PS_KILLED)
        n = snprintf (buf, size, "'%s' was killed by signal %d%s before READY", proc->name,
                      proc->signal, proc->core_dumped ? " (core dumped)" : "");
    else
        n = snprintf (buf, size, "'%s' failed: %s: %s", proc->name, proc->reason_word,
                      proc->reason);
    if (n > 0 && (size_t)n < size && tail[0])
        snprintf (buf + n, size - (size_t)n, "; output tail:\n%s", tail);
}

//  Post an answer (the bytes in buffer) to reply, echoing seq.
static void
s_post (zh_lifecycle_t *self, const char *reply, bool has_seq, int64_t seq,
        const msgpack_sbuffer *buffer)
{
    zh_send_answer (self->send, reply, strlen (reply), self->agent_addr, has_seq ? &seq : NULL,
                    (const uint8_t *)buffer->data, buffer->size);
}

//  Answer one waiter of proc (it reached ready or a terminal state).
static void
s_answer_waiter (zh_lifecycle_t *self, zh_proc_t *proc, s_waiter_t *waiter)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    if (waiter->kind == S_WAIT_SPAWN && proc->state == ZH_PS_READY) {
        msgpack_pack_map (&pk, 3);
        zh_pack_kv_bool (&pk, "ok", true);
        zh_pack_kv_str (&pk, "proc", proc->proc_addr);
        zh_pack_kv_int (&pk, "pid", (int64_t)proc->pid);
    } else if (waiter->kind == S_WAIT_SPAWN) {
        char message[3072];
        s_describe_end (proc, message, sizeof message);
        bool timeout =
            proc->state == ZH_PS_FAILED && strcmp (proc->reason_word, "READY_TIMEOUT") == 0;
        zh_pack_error (&pk, timeout ? "READY_TIMEOUT" : "SPAWN_FAILED", message);
    } else
        s_pack_end (&pk, proc);
    s_post (self, waiter->reply, waiter->has_seq, waiter->seq, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

//  Keep a waiter for proc; false when out of memory (LC-4: the caller
//  answers at once instead).
static bool
s_add_waiter (zh_lifecycle_t *self, zh_proc_t *proc, s_wait_kind_t kind,
              const zh_request_t *request)
{
    s_waiter_t *waiter = (s_waiter_t *)calloc (1, sizeof (s_waiter_t));
    if (waiter) waiter->reply = strdup (request->reply);
    if (!waiter || !waiter->reply) {
        free (waiter);
        return false;
    }
    waiter->kind = kind;
    waiter->has_seq = request->has_seq;
    waiter->seq = request->seq;
    waiter->next = (s_waiter_t *)zhashx_lookup (self->waiters, proc->name);
    if (waiter->next)
        zhashx_update (self->waiters, proc->name, waiter);
    else if (zhashx_insert (self->waiters, proc->name, waiter) != 0) {
        free (waiter->reply);
        free (waiter);
        return false;
    }
    return true;
}

//  Answer and free the waiters that this state settles (LC-1): spawn
//  waiters on ready or an end; every waiter on an end.
static void
s_settle_waiters (zh_lifecycle_t *self, zh_proc_t *proc)
{
    s_waiter_t *head = (s_waiter_t *)zhashx_lookup (self->waiters, proc->name);
    if (!head) return;
    bool terminal = zh_pstate_terminal (proc->state);
    s_waiter_t **link = &head;
    while (*link) {
        s_waiter_t *waiter = *link;
        if (terminal || (waiter->kind == S_WAIT_SPAWN && proc->state == ZH_PS_READY)) {
            *link = waiter->next;
            s_answer_waiter (self, proc, waiter);
            free (waiter->reply);
            free (waiter);
        } else
            link = &waiter->next;
    }
    if (head)
        zhashx_update (self->waiters, proc->name, head);
    else
        zhashx_delete (self->waiters, proc->name);
}

//  ---------------------------------------------------------------------
//  Process manager events

static void
s_on_state (void *arg, zh_proc_t *proc, zh_pstate_t old_state)
{
    zh_lifecycle_t *self = (zh_lifecycle_t *)arg;
    if (zh_pstate_terminal (proc->state)) zh_routes_proc_gone (self->routes, proc->name); //  LC-2
    s_settle_waiters (self, proc);
    if (self->watch) zh_watch_proc (self->watch, proc, old_state);
}

static void
s_on_output (void *arg, zh_proc_t *proc, const char *stream, const char *line, size_t len)
{
    zh_lifecycle_t *self = (zh_lifecycle_t *)arg;
    if (self->watch) zh_watch_output (self->watch, proc, stream, line, len);
}

static void
s_send_stop (void *arg, zh_proc_t *proc, const char *reason, int64_t timeout_ms)
{
    zh_lifecycle_t *self = (zh_lifecycle_t *)arg;
    zh_body_t body = {.command = ZH_STOP,
                      .present = ZH_F_REASON | ZH_F_TIMEOUT_MS,
                      .reason = zh_span_of (reason),
                      .timeout_ms = (uint64_t)timeout_ms};
    //  A proc that never connected cannot get it: the escalation goes on.
    zh_send_command (self->send, ZH_SOCK_BACKEND, (const uint8_t *)proc->name, strlen (proc->name),
                     ZH_STOP, &body);
}

static void
s_on_stop_all_done (void *arg, void *tag, size_t attempted, size_t stopped, size_t failed)
{
    zh_lifecycle_t *self = (zh_lifecycle_t *)arg;
    s_job_t *job = (s_job_t *)tag;
    zh_info ("stop-all", "attempted=%zu stopped=%zu failed=%zu", attempted, stopped, failed);
    if (job->reply) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 4);
        zh_pack_kv_bool (&pk, "ok", true);
        zh_pack_kv_uint (&pk, "attempted", attempted);
        zh_pack_kv_uint (&pk, "stopped", stopped);
        zh_pack_kv_uint (&pk, "failed", failed);
        s_post (self, job->reply, job->has_seq, job->seq, &buffer);
        msgpack_sbuffer_destroy (&buffer);
    }
    bool shutdown = job->shutdown;
    free (job->reply);
    free (job);
    if (shutdown && self->events.children_stopped) self->events.children_stopped (self->events.arg);
}

//  ---------------------------------------------------------------------
//  Construction

zh_lifecycle_t *
zh_lifecycle_new (const zh_config_t *config, const zh_lifecycle_setup_t *setup, zh_routes_t *routes,
                  zh_send_t *send, zh_lifecycle_events_t events)
{
    zh_lifecycle_t *self = (zh_lifecycle_t *)calloc (1, sizeof (zh_lifecycle_t));
    if (!self) return NULL;
    self->config = config;
    self->routes = routes;
    self->send = send;
    self->events = events;
    self->agent_addr = strdup (setup->agent_addr);
    self->waiters = zhashx_new ();
    self->watch = setup->watch;
    zh_procs_events_t procs_events = {.on_state = s_on_state,
                                      .on_output = s_on_output,
                                      .send_stop = s_send_stop,
                                      .on_stop_all_done = s_on_stop_all_done,
                                      .arg = self};
    self->procs = zh_procs_new (setup->zmq_ctx, setup->backend_ipc, setup->backend_inproc,
                                setup->host, config->heartbeat_ms, procs_events);
    if (!self->agent_addr || !self->waiters || !self->procs) {
        zh_lifecycle_destroy (&self);
        return NULL;
    }
    if (setup->child_cpus) zh_procs_set_child_cpus (self->procs, setup->child_cpus);
    zh_procs_set_batch_max (self->procs, config->batch_max_bytes);
    return self;
}

void
zh_lifecycle_destroy (zh_lifecycle_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_lifecycle_t *self = *self_p;
    zh_procs_destroy (&self->procs); //  children first: none outlives the broker
    if (self->waiters) {
        for (s_waiter_t *w = (s_waiter_t *)zhashx_first (self->waiters); w;
             w = (s_waiter_t *)zhashx_next (self->waiters))
            while (w) {
                s_waiter_t *next = w->next;
                free (w->reply);
                free (w);
                w = next;
            }
        zhashx_destroy (&self->waiters);
    }
    free (self->agent_addr);
    free (self);
    *self_p = NULL;
}

zh_procs_t *
zh_lifecycle_procs (zh_lifecycle_t *self)
{
    return self->procs;
}

//  ---------------------------------------------------------------------
//  READY

void
zh_lifecycle_ready (zh_lifecycle_t *self, const uint8_t *rid, size_t rid_len, const zh_body_t *body,
                    int64_t now)
{
    zh_proc_t *proc = zh_procs_lookup (self->procs, (const char *)rid, rid_len);
    if (proc && proc->state == ZH_PS_STOPPING && proc->stop_stage == 1 &&
        !zh_routes_lookup (self->routes, proc->name, strlen (proc->name))) {
        //  LC-3: stopped while starting, its STOP went nowhere; now that it
        //  is connected it gets STOP, so it need not wait for SIGTERM.
        zh_conn_t *conn = zh_conn_new (ZH_SOCK_BACKEND, ZH_CONN_PROC, rid, rid_len);
        if (conn) {
            zh_conn_set_proc_id (conn, proc->name);
            conn->last_recv = conn->last_send = now;
            if (zh_routes_add (self->routes, conn) == 0)
                s_send_stop (self, proc, "stopped while starting", proc->stop_timeout_ms);
        }
        return;
    }
    if (proc && proc->launch == ZH_LAUNCH_THREAD && proc->state == ZH_PS_FAILED && !proc->reaped) {
        //  A thread proc that missed its ready timeout could not get the
        //  STOP sent then (not connected): it gets it now, or it would run
        //  on forever (a thread cannot be killed).
        zh_body_t stop = {.command = ZH_STOP,
                          .present = ZH_F_REASON | ZH_F_TIMEOUT_MS,
                          .reason = zh_span_of ("READY_TIMEOUT"),
                          .timeout_ms = 0};
        zh_send_command (self->send, ZH_SOCK_BACKEND, rid, rid_len, ZH_STOP, &stop);
        return;
    }
    if (!proc || proc->state != ZH_PS_STARTING) {
        zh_send_error (self->send, ZH_SOCK_BACKEND, rid, rid_len, ZH_ERR_FORBIDDEN,
                       "READY from a proc this broker is not spawning", NULL);
        return;
    }
    if ((body->present & ZH_F_PROC) && !zh_span_eq (body->proc, proc->proc_addr)) {
        zh_send_error (self->send, ZH_SOCK_BACKEND, rid, rid_len, ZH_ERR_FORBIDDEN,
                       "READY proc is not the address this proc was given (ZHOST_PROC)", NULL);
        return;
    }
    zh_conn_t *conn = zh_conn_new (ZH_SOCK_BACKEND, ZH_CONN_PROC, rid, rid_len);
    if (!conn) return; //  out of memory: it stays starting, and times out
    zh_conn_set_proc_id (conn, proc->name);
    //  §14: it found our limit in ZHOST_BATCH_MAX_BYTES; READY batch: true
    //  says it takes BATCH.
    zh_conn_set_batch (conn, (body->present & ZH_F_BATCH) && body->batch,
                       (size_t)self->config->batch_max_bytes);
    conn->last_recv = conn->last_send = now;
    if (zh_routes_add (self->routes, conn) != 0) return;
    zh_procs_ready (self->procs, proc, now);
}

//  ---------------------------------------------------------------------
//  Ops

static void s_free_list (char **list);

//  argv from a msgpack array of strings (NULL-terminated, malloc'd), or
//  NULL when out of memory.
static char **
s_strings (const msgpack_object *array)
{
    char **list = (char **)calloc (array->via.array.size + 1, sizeof (char *));
    for (uint32_t i = 0; list && i < array->via.array.size; i++) {
        const msgpack_object *o = &array->via.array.ptr[i];
        if (!(list[i] = strndup (o->via.str.ptr, o->via.str.size))) {
            s_free_list (list);
            return NULL;
        }
    }
    return list;
}

//  env map {str: str} → "K=V" list (NULL-terminated, malloc'd), or NULL.
static char **
s_env_list (const msgpack_object *map)
{
    char **list = (char **)calloc (map->via.map.size + 1, sizeof (char *));
    for (uint32_t i = 0; list && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key, *v = &map->via.map.ptr[i].val;
        if (asprintf (&list[i], "%.*s=%.*s", (int)k->via.str.size, k->via.str.ptr,
                      (int)v->via.str.size, v->via.str.ptr) < 0) {
            list[i] = NULL;
            s_free_list (list);
            return NULL;
        }
    }
    return list;
}

static void
s_free_list (char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free (list[i]);
    free (list);
}

static bool
s_all_strings (const msgpack_object *o, bool map)
{
    if (map) {
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR ||
                o->via.map.ptr[i].val.type != MSGPACK_OBJECT_STR ||
                memchr (o->via.map.ptr[i].key.via.str.ptr, '=', o->via.map.ptr[i].key.via.str.size))
                return false;
        return true;
    }
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (o->via.array.ptr[i].type != MSGPACK_OBJECT_STR) return false;
    return true;
}

static bool
s_op_spawn (zh_lifecycle_t *self, const msgpack_object *req, const zh_request_t *request,
            msgpack_packer *pk)
{
    const msgpack_object *name = zh_map_get (req, "name");
    const msgpack_object *argv = zh_map_get (req, "argv");
    const msgpack_object *env = zh_map_get (req, "env");
    int64_t ready_ms = zh_map_get_uint (req, "ready_timeout_ms");
    if (!name || name->type != MSGPACK_OBJECT_STR || name->via.str.size > ZH_LABEL_MAX) {
        zh_pack_error (pk, "INVALID_NAME", "spawn needs a `name` that is a label");
        return true;
    }
    if (!argv || argv->type != MSGPACK_OBJECT_ARRAY || argv->via.array.size == 0 ||
        !s_all_strings (argv, false)) {
        zh_pack_error (pk, "BAD_REQUEST", "spawn needs `argv`, a non-empty array of strings");
        return true;
    }
    if (env && (env->type != MSGPACK_OBJECT_MAP || !s_all_strings (env, true))) {
        zh_pack_error (pk, "BAD_REQUEST", "`env` must be a map of strings (keys without '=')");
        return true;
    }
    if (ready_ms == -2) {
        zh_pack_error (pk, "BAD_REQUEST", "`ready_timeout_ms` must be a non-negative integer");
        return true;
    }
    if (ready_ms == -1) ready_ms = self->config->ready_timeout_ms;
    char label[ZH_LABEL_MAX + 1];
    snprintf (label, sizeof label, "%.*s", (int)name->via.str.size, name->via.str.ptr);
    char **args = s_strings (argv);
    char **envs = env ? s_env_list (env) : NULL;
    if (!args || (env && !envs)) {
        s_free_list (args);
        s_free_list (envs);
        zh_pack_error (pk, "INTERNAL", "out of memory");
        return true;
    }
    zh_error_t err;
    zh_proc_t *proc = zh_procs_spawn (self->procs, label, args, envs, ready_ms, self->now, &err);
    s_free_list (args);
    s_free_list (envs);
    if (!proc) {
        zh_pack_error (pk, err.word ? err.word : "SPAWN_FAILED", err.reason);
        return true;
    }
    if (s_add_waiter (self, proc, S_WAIT_SPAWN, request)) return false;
    //  LC-4: no memory to wait: say so now (the proc goes on starting).
    zh_pack_error (pk, "INTERNAL", "spawn started, but its answer could not be kept waiting");
    return true;
}

static zh_proc_t *
s_named_proc (zh_lifecycle_t *self, const msgpack_object *req, msgpack_packer *pk)
{
    const msgpack_object *name = zh_map_get (req, "name");
    if (!name || name->type != MSGPACK_OBJECT_STR) {
        zh_pack_error (pk, "BAD_REQUEST", "this op needs a string `name`");
        return NULL;
    }
    zh_proc_t *proc = zh_procs_lookup (self->procs, name->via.str.ptr, name->via.str.size);
    if (!proc) {
        char message[128];
        snprintf (message, sizeof message, "no spawned proc named '%.*s'",
                  (int)(name->via.str.size > 64 ? 64 : name->via.str.size), name->via.str.ptr);
        zh_pack_error (pk, "NO_SUCH_PROC", message);
    }
    return proc;
}

static bool
s_op_stop (zh_lifecycle_t *self, const msgpack_object *req, const zh_request_t *request,
           msgpack_packer *pk, bool kill)
{
    int64_t timeout = zh_map_get_uint (req, "timeout_ms");
    if (!kill && timeout == -2) {
        zh_pack_error (pk, "BAD_REQUEST", "`timeout_ms` must be a non-negative integer");
        return true;
    }
    const msgpack_object *reason = zh_map_get (req, "reason");
    if (!kill && reason && reason->type != MSGPACK_OBJECT_STR) {
        zh_pack_error (pk, "BAD_REQUEST", "`reason` must be a string");
        return true;
    }
    zh_proc_t *proc = s_named_proc (self, req, pk);
    if (!proc) return true;
    if (zh_pstate_terminal (proc->state)) {
        s_pack_end (pk, proc);
        return true;
    }
    //  The waiter first: a stop that cannot be waited for is not begun.
    if (!s_add_waiter (self, proc, S_WAIT_END, request)) {
        zh_pack_error (pk, "INTERNAL", "out of memory: the proc was not stopped");
        return true;
    }
    if (kill) {
        if (zh_procs_kill (self->procs, proc) != 0) {
            //  Take the waiter back: answered here, not at the end.
            s_waiter_t *head = (s_waiter_t *)zhashx_lookup (self->waiters, proc->name);
            if (head) {
                s_waiter_t *next = head->next;
                free (head->reply);
                free (head);
                if (next)
                    zhashx_update (self->waiters, proc->name, next);
                else
                    zhashx_delete (self->waiters, proc->name);
            }
            zh_pack_error (pk, "NOT_SUPPORTED", "an in-process proc cannot be killed; use stop");
            return true;
        }
    } else {
        char why[128] = "stop requested";
        if (reason)
            snprintf (why, sizeof why, "%.*s",
                      (int)(reason->via.str.size > 120 ? 120 : reason->via.str.size),
                      reason->via.str.ptr);
        zh_procs_stop (self->procs, proc,
                       timeout >= 0 ? timeout : self->config->terminate_timeout_ms, why, self->now);
    }
    return false;
}

static void s_pack_procs (zh_lifecycle_t *self, msgpack_packer *pk);

static void
s_op_list (zh_lifecycle_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 2);
    zh_pack_kv_bool (pk, "ok", true);
    s_pack_procs (self, pk);
}

//  status: the entry, and the output tail for admin callers only (proc
//  output can hold secrets).
static void
s_op_status (zh_lifecycle_t *self, const msgpack_object *req, const zh_request_t *request,
             msgpack_packer *pk)
{
    zh_proc_t *proc = s_named_proc (self, req, pk);
    if (!proc) return;
    msgpack_pack_map (pk, request->admin ? 3 : 2);
    zh_pack_kv_bool (pk, "ok", true);
    zh_pack_str (pk, "proc");
    s_pack_proc (pk, proc);
    if (request->admin) {
        char tail[4096];
        zh_proc_tail (proc, tail, sizeof tail);
        zh_pack_kv_str (pk, "tail", tail);
    }
}

int
zh_lifecycle_stop_all (zh_lifecycle_t *self, int64_t timeout_ms, int64_t max_in_flight,
                       const char *reason, const zh_request_t *request, bool shutdown, int64_t now)
{
    s_job_t *job = (s_job_t *)calloc (1, sizeof (s_job_t));
    if (job && request && request->reply && !(job->reply = strdup (request->reply))) {
        free (job);
        job = NULL;
    }
    if (!job) {
        zh_err ("stop-all", "error=\"out of memory\"");
        if (shutdown && self->events.children_stopped)
            self->events.children_stopped (self->events.arg);
        return -1;
    }
    job->has_seq = request && request->has_seq;
    job->seq = request ? request->seq : 0;
    job->shutdown = shutdown;
    self->now = now;
    zh_procs_stop_all (
        self->procs, timeout_ms >= 0 ? timeout_ms : self->config->terminate_timeout_ms,
        max_in_flight > 0 ? max_in_flight : self->config->max_in_flight, reason, now, job);
    return 0;
}

static bool
s_op_stop_all (zh_lifecycle_t *self, const msgpack_object *req, const zh_request_t *request,
               msgpack_packer *pk)
{
    int64_t timeout = zh_map_get_uint (req, "timeout_ms");
    int64_t max_in_flight = zh_map_get_uint (req, "max_in_flight");
    if (timeout == -2 || max_in_flight == -2 || max_in_flight == 0) {
        zh_pack_error (pk, "BAD_REQUEST",
                       "`timeout_ms` must be >= 0 and `max_in_flight` >= 1 (integers)");
        return true;
    }
    if (zh_lifecycle_stop_all (self, timeout, max_in_flight, "stop_all", request, false,
                               self->now) != 0) {
        zh_pack_error (pk, "INTERNAL", "out of memory");
        return true;
    }
    return false;
}

static void
s_pack_procs (zh_lifecycle_t *self, msgpack_packer *pk)
{
    size_t n = 0;
    for (zh_proc_t *p = zh_procs_first (self->procs); p; p = zh_procs_next (self->procs))
        n++;
    zh_pack_str (pk, "procs");
    msgpack_pack_array (pk, n);
    for (zh_proc_t *p = zh_procs_first (self->procs); p; p = zh_procs_next (self->procs))
        s_pack_proc (pk, p);
}

//  watch: the snapshot (as list) now, then events (zh_watch, WA-1).
static void
s_op_watch (zh_lifecycle_t *self, const zh_request_t *request, msgpack_packer *pk)
{
    if (!self->watch || !request->from ||
        zh_watch_add (self->watch, request->from, request->reply, request->has_seq, request->seq,
                      NULL) != 0) {
        zh_pack_error (pk, "OVERLOADED", "too many watchers (at most 256)");
        return;
    }
    msgpack_pack_map (pk, 2);
    zh_pack_kv_bool (pk, "ok", true);
    s_pack_procs (self, pk);
}

//  unwatch: ends the caller's watches and follows.
static void
s_op_unwatch (zh_lifecycle_t *self, const zh_request_t *request, msgpack_packer *pk)
{
    size_t ended = self->watch && request->from ? zh_watch_remove (self->watch, request->from) : 0;
    msgpack_pack_map (pk, 2);
    zh_pack_kv_bool (pk, "ok", true);
    zh_pack_kv_uint (pk, "ended", ended);
}

//  logs: the kept lines (the last `lines`, default 100), and with
//  `follow` each new line until the proc ends (admin only: the agent
//  checked).
static void
s_op_logs (zh_lifecycle_t *self, const msgpack_object *req, const zh_request_t *request,
           msgpack_packer *pk)
{
    const msgpack_object *follow = zh_map_get (req, "follow");
    int64_t want = zh_map_get_uint (req, "lines");
    if ((follow && follow->type != MSGPACK_OBJECT_BOOLEAN) || want == -2) {
        zh_pack_error (pk, "BAD_REQUEST", "`follow` must be a bool and `lines` an integer >= 0");
        return;
    }
    zh_proc_t *proc = s_named_proc (self, req, pk);
    if (!proc) return;
    bool following = follow && follow->via.boolean && !zh_pstate_terminal (proc->state);
    if (following && (!self->watch || !request->from ||
                      zh_watch_add (self->watch, request->from, request->reply, request->has_seq,
                                    request->seq, proc->name) != 0)) {
        zh_pack_error (pk, "OVERLOADED", "too many watchers (at most 256)");
        return;
    }
    size_t count = zh_proc_tail_count (proc);
    size_t n = want < 0 ? 100 : (size_t)want;
    size_t first = count > n ? count - n : 0;
    msgpack_pack_map (pk, 3);
    zh_pack_kv_bool (pk, "ok", true);
    zh_pack_kv_bool (pk, "following", following);
    zh_pack_str (pk, "lines");
    msgpack_pack_array (pk, count - first);
    for (size_t i = first; i < count; i++) {
        msgpack_pack_map (pk, 2);
        zh_pack_kv_str (pk, "stream", zh_proc_tail_stream (proc, i));
        zh_pack_kv_str (pk, "line", zh_proc_tail_line (proc, i));
    }
}

bool
zh_lifecycle_op (zh_lifecycle_t *self, const char *op, const msgpack_object *req,
                 const zh_request_t *request, msgpack_packer *pk, int64_t now)
{
    self->now = now;
    if (strcmp (op, "spawn") == 0) return s_op_spawn (self, req, request, pk);
    if (strcmp (op, "stop") == 0) return s_op_stop (self, req, request, pk, false);
    if (strcmp (op, "kill") == 0) return s_op_stop (self, req, request, pk, true);
    if (strcmp (op, "stop_all") == 0) return s_op_stop_all (self, req, request, pk);
    if (strcmp (op, "list") == 0)
        s_op_list (self, pk);
    else if (strcmp (op, "watch") == 0)
        s_op_watch (self, request, pk);
    else if (strcmp (op, "unwatch") == 0)
        s_op_unwatch (self, request, pk);
    else if (strcmp (op, "logs") == 0)
        s_op_logs (self, req, request, pk);
    else
        s_op_status (self, req, request, pk);
    return true;
}

int
zh_lifecycle_spawn_config (zh_lifecycle_t *self, int64_t now, zh_error_t *err)
{
    for (size_t i = 0; i < self->config->spawn_count; i++) {
        const zh_spawn_spec_t *spec = &self->config->spawns[i];
        int argc = 0;
        zh_error_t split_err;
        char **argv = zh_shell_split (spec->command, &argc, &split_err);
        if (!argv)
            return zh_error_exit (err, 2, "--spawn %s=%s: %s", spec->name, spec->command,
                                  split_err.reason);
        zh_error_t spawn_err;
        zh_proc_t *proc = zh_procs_spawn (self->procs, spec->name, argv, NULL,
                                          self->config->ready_timeout_ms, now, &spawn_err);
        zh_argv_free (&argv);
        if (!proc)
            return zh_error_exit (
                err, spawn_err.word && strcmp (spawn_err.word, "SPAWN_FAILED") == 0 ? 1 : 2,
                "--spawn %s: %s: %s", spec->name, spawn_err.word ? spawn_err.word : "SPAWN_FAILED",
                spawn_err.reason);
    }
    return 0;
}
