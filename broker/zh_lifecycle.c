/*  zh_lifecycle.c — procs as the broker sees them: spawn/stop/kill/list
    requests of the host agent, READY on the backend, and the answers that
    wait for a proc to change state.

    Where it sits: between the host agent (zh_agent.c), which hands it the
    proc ops, and the process manager (zh_procs.c), which calls back on
    every state change. A request that cannot be answered at once (spawn
    waits for READY, stop and kill wait for the end) leaves a waiter on the
    proc: its reply port. The state callbacks answer the waiters, give a
    ready proc its route, and take the route of an ended one away.

    LC-1 (one outcome): every waiter of a proc is answered exactly once,
    with the same terminal state: concurrent stops coalesce.
    LC-2 (no orphan routes): a proc's route exists only while the proc is
    ready or stopping; its end removes it and marks its id gone, so SENDs
    to it are returned PROC_GONE until the name is spawned again.
    LC-3 (late READY): a proc stopped while starting could not get its
    STOP; its READY, when it comes, connects it and gets it the STOP.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_broker_int.h"
#include "zh_log.h"
#include "zh_pack.h"

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
        size_t word = strcspn (proc->reason, ":");
        zh_pack_str (pk, "reason");
        msgpack_pack_str (pk, word);
        msgpack_pack_str_body (pk, proc->reason, word);
        const char *detail = proc->reason[word] ? proc->reason + word + 1 : "";
        while (*detail == ' ')
            detail++;
        zh_pack_str (pk, "detail");
        zh_pack_str (pk, detail);
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
        n = snprintf (buf, size, "'%s' failed: %s", proc->name, proc->reason);
    if (n > 0 && (size_t)n < size && tail[0])
        snprintf (buf + n, size - (size_t)n, "; output tail:\n%s", tail);
}

static void
s_send_answer (zh_broker_t *self, const char *reply, msgpack_sbuffer *buffer)
{
    zh_agent_reply (self, reply, strlen (reply), buffer->data, buffer->size);
}

//  Answer one waiter of proc (it reached ready or a terminal state).
static void
s_answer_waiter (zh_broker_t *self, zh_proc_t *proc, zh_waiter_t *waiter)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    if (waiter->kind == ZH_WAIT_SPAWN && proc->state == ZH_PS_READY) {
        msgpack_pack_map (&pk, 3);
        zh_pack_str (&pk, "ok");
        msgpack_pack_true (&pk);
        zh_pack_str (&pk, "proc");
        zh_pack_str (&pk, proc->proc_addr);
        zh_pack_str (&pk, "pid");
        msgpack_pack_int64 (&pk, (int64_t)proc->pid);
    } else if (waiter->kind == ZH_WAIT_SPAWN) {
        char message[3072];
        s_describe_end (proc, message, sizeof message);
        bool timeout =
            proc->state == ZH_PS_FAILED && strncmp (proc->reason, "READY_TIMEOUT", 13) == 0;
        zh_pack_error (&pk, timeout ? "READY_TIMEOUT" : "SPAWN_FAILED", message);
    } else
        s_pack_end (&pk, proc);
    s_send_answer (self, waiter->reply, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

static void
s_add_waiter (zh_proc_t *proc, zh_wait_kind_t kind, const char *reply)
{
    zh_waiter_t *waiter = (zh_waiter_t *)calloc (1, sizeof (zh_waiter_t));
    if (!waiter) return;
    waiter->kind = kind;
    waiter->reply = strdup (reply);
    waiter->next = (zh_waiter_t *)proc->user;
    proc->user = waiter;
}

//  Answer and free the waiters that this state settles (LC-1): spawn
//  waiters on ready or an end; every waiter on an end.
static void
s_settle_waiters (zh_broker_t *self, zh_proc_t *proc)
{
    bool terminal = zh_pstate_terminal (proc->state);
    zh_waiter_t **link = (zh_waiter_t **)&proc->user;
    while (*link) {
        zh_waiter_t *waiter = *link;
        if (terminal || (waiter->kind == ZH_WAIT_SPAWN && proc->state == ZH_PS_READY)) {
            *link = waiter->next;
            s_answer_waiter (self, proc, waiter);
            free (waiter->reply);
            free (waiter);
        } else
            link = &waiter->next;
    }
}

//  ---------------------------------------------------------------------
//  Process manager callbacks

static void
s_on_state (void *arg, zh_proc_t *proc, zh_pstate_t old_state)
{
    zh_broker_t *self = (zh_broker_t *)arg;
    if (zh_pstate_terminal (proc->state)) zh_broker_proc_gone (self, proc->name); //  LC-2
    s_settle_waiters (self, proc);
}

static void
s_send_stop (void *arg, zh_proc_t *proc, const char *reason, int64_t timeout_ms)
{
    zh_broker_t *self = (zh_broker_t *)arg;
    zh_body_t body = {.command = ZH_STOP,
                      .present = ZH_F_REASON | ZH_F_TIMEOUT_MS,
                      .reason = zh_span_of (reason),
                      .timeout_ms = (uint64_t)timeout_ms};
    //  A proc that never connected cannot get it: the escalation goes on.
    zh_broker_send_body (self, ZH_SOCK_BACKEND, (const uint8_t *)proc->name, strlen (proc->name),
                         &body);
}

static void
s_on_stop_all_done (void *arg, void *tag, size_t attempted, size_t stopped, size_t failed)
{
    zh_broker_t *self = (zh_broker_t *)arg;
    zh_job_t *job = (zh_job_t *)tag;
    zh_info ("stop-all", "attempted=%zu stopped=%zu failed=%zu", attempted, stopped, failed);
    if (job->reply) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 4);
        zh_pack_str (&pk, "ok");
        msgpack_pack_true (&pk);
        zh_pack_str (&pk, "attempted");
        msgpack_pack_uint64 (&pk, attempted);
        zh_pack_str (&pk, "stopped");
        msgpack_pack_uint64 (&pk, stopped);
        zh_pack_str (&pk, "failed");
        msgpack_pack_uint64 (&pk, failed);
        s_send_answer (self, job->reply, &buffer);
        msgpack_sbuffer_destroy (&buffer);
    }
    if (job->shutdown) {
        self->stop_all_pending = false;
        zh_broker_begin_drain (self, "children stopped");
    }
    free (job->reply);
    free (job);
}

zh_procs_events_t
zh_lifecycle_events (zh_broker_t *self)
{
    zh_procs_events_t events = {.on_state = s_on_state,
                                .send_stop = s_send_stop,
                                .on_stop_all_done = s_on_stop_all_done,
                                .arg = self};
    return events;
}

//  ---------------------------------------------------------------------
//  READY

void
zh_lifecycle_ready (zh_broker_t *self, const uint8_t *rid, size_t rid_len, const zh_body_t *body)
{
    zh_proc_t *proc = zh_procs_lookup (self->procs, (const char *)rid, rid_len);
    if (proc && proc->state == ZH_PS_STOPPING && proc->stop_stage == 1 &&
        !zh_table_lookup (self->routes, proc->name, strlen (proc->name))) {
        //  LC-3: stopped while starting, its STOP went nowhere; now that it
        //  is connected it gets STOP, so it need not wait for SIGTERM.
        if (zh_broker_add_proc_conn (self, rid, rid_len, proc->name))
            s_send_stop (self, proc, "stopped while starting", proc->stop_timeout_ms);
        return;
    }
    if (!proc || proc->state != ZH_PS_STARTING) {
        zh_broker_reject (self, ZH_SOCK_BACKEND, rid, rid_len, 403,
                          "READY from a proc this broker is not spawning");
        return;
    }
    if ((body->present & ZH_F_PROC) && !zh_span_eq (body->proc, proc->proc_addr)) {
        zh_broker_reject (self, ZH_SOCK_BACKEND, rid, rid_len, 403,
                          "READY proc is not the address this proc was given (ZHOST_PROC)");
        return;
    }
    if (!zh_broker_add_proc_conn (self, rid, rid_len, proc->name)) return;
    zh_procs_ready (self->procs, proc, self->now);
}

//  ---------------------------------------------------------------------
//  Ops

//  A zh_procs error reason is "CODE: message": the code goes to `code`,
//  the rest to `message`.
static void
s_pack_procs_error (msgpack_packer *pk, const zh_error_t *err)
{
    char code[32] = "SPAWN_FAILED";
    const char *message = err->reason;
    size_t n = strcspn (err->reason, ":");
    if (n > 0 && n < sizeof code && err->reason[n] == ':') {
        memcpy (code, err->reason, n);
        code[n] = 0;
        message = err->reason + n + 1;
        while (*message == ' ')
            message++;
    }
    zh_pack_error (pk, code, message);
}

//  argv from a msgpack array of strings (NULL-terminated, malloc'd).
static char **
s_strings (const msgpack_object *array)
{
    char **list = (char **)calloc (array->via.array.size + 1, sizeof (char *));
    for (uint32_t i = 0; list && i < array->via.array.size; i++) {
        const msgpack_object *o = &array->via.array.ptr[i];
        list[i] = strndup (o->via.str.ptr, o->via.str.size);
    }
    return list;
}

//  env map {str: str} → "K=V" list (NULL-terminated, malloc'd).
static char **
s_env_list (const msgpack_object *map)
{
    char **list = (char **)calloc (map->via.map.size + 1, sizeof (char *));
    for (uint32_t i = 0; list && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key, *v = &map->via.map.ptr[i].val;
        if (asprintf (&list[i], "%.*s=%.*s", (int)k->via.str.size, k->via.str.ptr,
                      (int)v->via.str.size, v->via.str.ptr) < 0)
            list[i] = NULL;
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
s_op_spawn (zh_broker_t *self, const msgpack_object *req, const char *reply, msgpack_packer *pk)
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
    zh_error_t err;
    zh_proc_t *proc = zh_procs_spawn (self->procs, label, args, envs, ready_ms, self->now, &err);
    s_free_list (args);
    s_free_list (envs);
    if (!proc) {
        s_pack_procs_error (pk, &err);
        return true;
    }
    s_add_waiter (proc, ZH_WAIT_SPAWN, reply);
    return false;
}

static zh_proc_t *
s_named_proc (zh_broker_t *self, const msgpack_object *req, msgpack_packer *pk)
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
s_op_stop (zh_broker_t *self, const msgpack_object *req, const char *reply, msgpack_packer *pk,
           bool kill)
{
    zh_proc_t *proc = s_named_proc (self, req, pk);
    if (!proc) return true;
    if (zh_pstate_terminal (proc->state)) {
        s_pack_end (pk, proc);
        return true;
    }
    if (kill) {
        if (zh_procs_kill (self->procs, proc) != 0) {
            zh_pack_error (pk, "NOT_SUPPORTED", "an in-process proc cannot be killed; use stop");
            return true;
        }
    } else {
        int64_t timeout = zh_map_get_uint (req, "timeout_ms");
        const msgpack_object *reason = zh_map_get (req, "reason");
        char why[128] = "stop requested";
        if (reason && reason->type == MSGPACK_OBJECT_STR)
            snprintf (why, sizeof why, "%.*s",
                      (int)(reason->via.str.size > 120 ? 120 : reason->via.str.size),
                      reason->via.str.ptr);
        zh_procs_stop (self->procs, proc,
                       timeout >= 0 ? timeout : self->config->terminate_timeout_ms, why, self->now);
    }
    s_add_waiter (proc, ZH_WAIT_END, reply);
    return false;
}

static void
s_op_list (zh_broker_t *self, msgpack_packer *pk)
{
    size_t n = 0;
    for (zh_proc_t *p = zh_procs_first (self->procs); p; p = zh_procs_next (self->procs))
        n++;
    msgpack_pack_map (pk, 2);
    zh_pack_str (pk, "ok");
    msgpack_pack_true (pk);
    zh_pack_str (pk, "procs");
    msgpack_pack_array (pk, n);
    for (zh_proc_t *p = zh_procs_first (self->procs); p; p = zh_procs_next (self->procs))
        s_pack_proc (pk, p);
}

//  stop_all and shutdown: a bulk stop whose end answers (and for
//  shutdown, then drains and exits).
static bool
s_op_stop_all (zh_broker_t *self, const msgpack_object *req, const char *reply, msgpack_packer *pk,
               bool shutdown)
{
    int64_t timeout = zh_map_get_uint (req, "timeout_ms");
    int64_t max_in_flight = zh_map_get_uint (req, "max_in_flight");
    if (timeout == -2 || max_in_flight == -2 || max_in_flight == 0) {
        zh_pack_error (pk, "BAD_REQUEST",
                       "`timeout_ms` must be >= 0 and `max_in_flight` >= 1 (integers)");
        return true;
    }
    zh_job_t *job = (zh_job_t *)calloc (1, sizeof (zh_job_t));
    if (!job) {
        zh_pack_error (pk, "INTERNAL", "out of memory");
        return true;
    }
    job->reply = strdup (reply);
    job->shutdown = shutdown;
    if (shutdown) {
        self->stopping_children = true;
        self->stop_all_pending = true;
        zh_info ("shutdown", "reason=\"shutdown op\"");
    }
    zh_procs_stop_all (self->procs, timeout >= 0 ? timeout : self->config->terminate_timeout_ms,
                       max_in_flight > 0 ? max_in_flight : self->config->max_in_flight,
                       shutdown ? "broker shutdown" : "stop_all", self->now, job);
    return false;
}

bool
zh_lifecycle_op (zh_broker_t *self, const char *op, const msgpack_object *req, const char *reply,
                 msgpack_packer *pk)
{
    if (strcmp (op, "spawn") == 0) return s_op_spawn (self, req, reply, pk);
    if (strcmp (op, "stop") == 0) return s_op_stop (self, req, reply, pk, false);
    if (strcmp (op, "kill") == 0) return s_op_stop (self, req, reply, pk, true);
    if (strcmp (op, "stop_all") == 0) return s_op_stop_all (self, req, reply, pk, false);
    if (strcmp (op, "shutdown") == 0) return s_op_stop_all (self, req, reply, pk, true);
    if (strcmp (op, "list") == 0) {
        s_op_list (self, pk);
        return true;
    }
    //  status
    zh_proc_t *proc = s_named_proc (self, req, pk);
    if (proc) {
        msgpack_pack_map (pk, 3);
        zh_pack_str (pk, "ok");
        msgpack_pack_true (pk);
        zh_pack_str (pk, "proc");
        s_pack_proc (pk, proc);
        zh_pack_str (pk, "tail");
        char tail[4096];
        zh_proc_tail (proc, tail, sizeof tail);
        zh_pack_str (pk, tail);
    }
    return true;
}

int
zh_lifecycle_spawn_config (zh_broker_t *self, zh_error_t *err)
{
    for (size_t i = 0; i < self->config->spawn_count; i++) {
        const zh_spawn_spec_t *spec = &self->config->spawns[i];
        int argc = 0;
        zh_error_t split_err;
        char **argv = zh_shell_split (spec->command, &argc, &split_err);
        if (!argv)
            return zh_error_set (err, 2, 0, "--spawn %s=%s: %s", spec->name, spec->command,
                                 split_err.reason);
        zh_error_t spawn_err;
        zh_proc_t *proc = zh_procs_spawn (self->procs, spec->name, argv, NULL,
                                          self->config->ready_timeout_ms, self->now, &spawn_err);
        zh_argv_free (&argv);
        if (!proc)
            return zh_error_set (err, strncmp (spawn_err.reason, "SPAWN_FAILED", 12) ? 2 : 1, 0,
                                 "--spawn %s: %s", spec->name, spawn_err.reason);
    }
    return 0;
}
