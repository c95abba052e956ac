/*  zh_watch.c — watchers and their events (see zh_watch.h).

    Where it sits: below the lifecycle and the peer links, above routes
    and send. Events are rare next to messages (a state change, a line of
    output), so the watchers are a plain array, walked per event.
*/
#include "zh_watch.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_log.h"
#include "zh_pack.h"

typedef struct {
    zh_sock_t sock;                  //  the socket the caller's connection is on
    uint8_t rid[ZH_RID_MAX];         //  its routing id there
    size_t rid_len;                  //  bytes of rid
    char principal[ZH_ADDR_MAX + 1]; //  its principal (proc id or peer endpoint)
    char reply[ZH_ADDR_MAX + 1];     //  where events go
    bool has_seq;                    //  the request had a seq ...
    int64_t seq;                     //  ... echoed in every event (WA-1)
    char logs_of[ZH_LABEL_MAX + 1];  //  "" : a watch; else: follow this proc's output
} s_watcher_t;

struct _zh_watch_t {
    zh_routes_t *routes;                //  is a watcher's connection still there? (WA-2)
    zh_send_t *send;                    //  events to the outbox
    char *agent_addr;                   //  src of every event
    s_watcher_t watchers[ZH_WATCH_MAX]; //  the first count are in use
    size_t count;                       //  watchers in use
    uint64_t sent;                      //  events posted
};

zh_watch_t *
zh_watch_new (zh_routes_t *routes, zh_send_t *send, const char *agent_addr)
{
    zh_watch_t *self = (zh_watch_t *)calloc (1, sizeof (zh_watch_t));
    if (!self) return NULL;
    self->routes = routes;
    self->send = send;
    self->agent_addr = strdup (agent_addr);
    if (!self->agent_addr) zh_watch_destroy (&self);
    return self;
}

void
zh_watch_destroy (zh_watch_t **self_p)
{
    if (!self_p || !*self_p) return;
    free ((*self_p)->agent_addr);
    free (*self_p);
    *self_p = NULL;
}

//  WA-2: the caller's connection (same routing id, same principal) is
//  still there.
static bool
s_present (zh_watch_t *self, const s_watcher_t *w)
{
    zh_conn_t *conn = zh_routes_conn (self->routes, w->sock, w->rid, w->rid_len);
    char name[ZH_ADDR_MAX + 1];
    return conn && strcmp (zh_conn_name (conn, name, sizeof name), w->principal) == 0;
}

static bool
s_same_caller (const s_watcher_t *w, const zh_conn_t *from)
{
    return w->sock == from->sock && w->rid_len == from->rid_len &&
           memcmp (w->rid, from->rid, from->rid_len) == 0;
}

static void
s_drop (zh_watch_t *self, size_t i, const char *why)
{
    zh_debug ("watch", "principal=%s reply=%s ended=\"%s\"", self->watchers[i].principal,
              self->watchers[i].reply, why);
    //  Order among the rest does not matter: each gets its own events.
    self->watchers[i] = self->watchers[--self->count];
}

int
zh_watch_add (zh_watch_t *self, const zh_conn_t *from, const char *reply, bool has_seq, int64_t seq,
              const char *logs_of)
{
    for (size_t i = self->count; i-- > 0;) //  make room from the departed first
        if (!s_present (self, &self->watchers[i])) s_drop (self, i, "gone");
    if (self->count == ZH_WATCH_MAX || from->rid_len > ZH_RID_MAX) return -1;
    s_watcher_t *w = &self->watchers[self->count++];
    memset (w, 0, sizeof *w);
    w->sock = from->sock;
    memcpy (w->rid, from->rid, from->rid_len);
    w->rid_len = from->rid_len;
    zh_conn_name (from, w->principal, sizeof w->principal);
    snprintf (w->reply, sizeof w->reply, "%s", reply);
    w->has_seq = has_seq;
    w->seq = seq;
    if (logs_of) snprintf (w->logs_of, sizeof w->logs_of, "%s", logs_of);
    return 0;
}

size_t
zh_watch_remove (zh_watch_t *self, const zh_conn_t *from)
{
    size_t ended = 0;
    for (size_t i = self->count; i-- > 0;)
        if (s_same_caller (&self->watchers[i], from)) {
            s_drop (self, i, "unwatch");
            ended++;
        }
    return ended;
}

//  Post one event to watcher i.
static void
s_post (zh_watch_t *self, s_watcher_t *w, const msgpack_sbuffer *event)
{
    if (zh_send_answer (self->send, w->reply, strlen (w->reply), self->agent_addr,
                        w->has_seq ? &w->seq : NULL, (const uint8_t *)event->data,
                        event->size) == 0)
        self->sent++;
}

//  Post event to every present watcher that wants it: watches when
//  logs_of is NULL, else the followers of that proc.
static void
s_fan_out (zh_watch_t *self, const char *logs_of, const msgpack_sbuffer *event)
{
    for (size_t i = self->count; i-- > 0;) {
        s_watcher_t *w = &self->watchers[i];
        bool wants = logs_of ? strcmp (w->logs_of, logs_of) == 0 : w->logs_of[0] == 0;
        if (!wants) continue;
        if (!s_present (self, w))
            s_drop (self, i, "gone");
        else
            s_post (self, w, event);
    }
}

void
zh_watch_proc (zh_watch_t *self, const zh_proc_t *proc, zh_pstate_t old_state)
{
    if (self->count) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
        size_t n = 6 + (proc->state == ZH_PS_STOPPED) + 2 * (proc->state == ZH_PS_KILLED) +
                   2 * (proc->state == ZH_PS_FAILED);
        msgpack_pack_map (&pk, n);
        zh_pack_kv_str (&pk, "event", "proc");
        zh_pack_kv_str (&pk, "name", proc->name);
        zh_pack_kv_str (&pk, "proc", proc->proc_addr);
        zh_pack_kv_str (&pk, "from", zh_pstate_name (old_state));
        zh_pack_kv_str (&pk, "to", zh_pstate_name (proc->state));
        zh_pack_kv_int (&pk, "pid", (int64_t)proc->pid);
        if (proc->state == ZH_PS_STOPPED) zh_pack_kv_int (&pk, "exit_code", proc->exit_code);
        if (proc->state == ZH_PS_KILLED) {
            zh_pack_kv_int (&pk, "signal", proc->signal);
            zh_pack_kv_bool (&pk, "core_dumped", proc->core_dumped);
        }
        if (proc->state == ZH_PS_FAILED) {
            zh_pack_kv_str (&pk, "reason", proc->reason_word);
            zh_pack_kv_str (&pk, "detail", proc->reason);
        }
        s_fan_out (self, NULL, &buffer);
        msgpack_sbuffer_destroy (&buffer);
    }
    if (zh_pstate_terminal (proc->state)) //  WA-2: a follow ends with its proc
        for (size_t i = self->count; i-- > 0;)
            if (strcmp (self->watchers[i].logs_of, proc->name) == 0) s_drop (self, i, "proc ended");
}

void
zh_watch_output (zh_watch_t *self, const zh_proc_t *proc, const char *stream, const char *line,
                 size_t len)
{
    if (!self->count) return;
    bool any = false;
    for (size_t i = 0; i < self->count && !any; i++)
        any = strcmp (self->watchers[i].logs_of, proc->name) == 0;
    if (!any) return;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    zh_pack_kv_str (&pk, "event", "output");
    zh_pack_kv_str (&pk, "name", proc->name);
    zh_pack_kv_str (&pk, "stream", stream);
    zh_pack_str (&pk, "line");
    zh_pack_strn (&pk, line, len);
    s_fan_out (self, proc->name, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

void
zh_watch_peer (zh_watch_t *self, const char *endpoint, const char *state, uint64_t incarnation)
{
    if (!self->count) return;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, incarnation ? 4 : 3);
    zh_pack_kv_str (&pk, "event", "peer");
    zh_pack_kv_str (&pk, "endpoint", endpoint);
    zh_pack_kv_str (&pk, "state", state);
    if (incarnation) zh_pack_kv_uint (&pk, "incarnation", incarnation);
    s_fan_out (self, NULL, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

size_t
zh_watch_count (zh_watch_t *self)
{
    return self->count;
}

uint64_t
zh_watch_events_sent (zh_watch_t *self)
{
    return self->sent;
}
