/*  zh_watch.h — watchers: the callers of the agent's `watch` and of
    `logs` with follow, and the events they are sent (docs/protocol.md §8).

    Where it sits: below the lifecycle (which adds watchers for the
    `watch`, `unwatch` and `logs` ops and reports every proc state change
    and output line here) and the peer links (which report every link
    change here); above routes (is the watcher still attached?) and send
    (each event is one SEND to the watcher's reply port, posted to the
    outbox, so only the router routes and an event never overtakes the
    answer that started the watch).

    WA-1 (in order): a watcher gets its first answer, then each event in
    the order it happened, each meta carrying the seq of its request.
    WA-2 (until it leaves): a watcher ends when its caller unwatches, or
    when the connection it came from is gone (checked before every event:
    a connection with the same routing id and principal is the same
    caller reconnecting); a `logs` follower also ends when its proc ends.
    WA-3 (bounded): at most ZH_WATCH_MAX watchers; an event is sent like
    any answer of the agent, so a watcher that reads slower than its hwm
    loses events (the router counts them as it counts any message it
    could not hand over), and never blocks the broker.
*/
#ifndef ZH_WATCH_H
#define ZH_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zh_conn.h"
#include "zh_procs.h"
#include "zh_routes.h"
#include "zh_send.h"

#define ZH_WATCH_MAX 256

typedef struct _zh_watch_t zh_watch_t;

//  agent_addr: the src of every event.
zh_watch_t *zh_watch_new (zh_routes_t *routes, zh_send_t *send, const char *agent_addr);
void zh_watch_destroy (zh_watch_t **self_p);

//  A watcher for from (the connection the request came on), answered at
//  reply with seq (when has_seq). logs_of NULL: every proc and peer
//  event; else the output lines of that proc. 0, or -1 when ZH_WATCH_MAX
//  are watching (or out of memory).
int zh_watch_add (zh_watch_t *self, const zh_conn_t *from, const char *reply, bool has_seq,
                  int64_t seq, const char *logs_of);

//  unwatch: end every watcher of from's. The number ended.
size_t zh_watch_remove (zh_watch_t *self, const zh_conn_t *from);

//  A proc's state changed (its fields are already new).
void zh_watch_proc (zh_watch_t *self, const zh_proc_t *proc, zh_pstate_t old_state);

//  A line of a proc's output (stream "stdout" or "stderr").
void zh_watch_output (zh_watch_t *self, const zh_proc_t *proc, const char *stream, const char *line,
                      size_t len);

//  A peer link changed: state "up", "down" or "restarted"; incarnation
//  when known (0: not).
void zh_watch_peer (zh_watch_t *self, const char *endpoint, const char *state,
                    uint64_t incarnation);

//  Watchers now, and events posted (for stats).
size_t zh_watch_count (zh_watch_t *self);
uint64_t zh_watch_events_sent (zh_watch_t *self);

#endif
