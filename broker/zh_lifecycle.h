/*  zh_lifecycle.h — procs as the broker sees them: the host agent's proc
    ops (spawn, stop, kill, status, list, stop_all, logs, and watch and
    unwatch, whose events it reports to zh_watch), READY on the backend,
    the routes of ready procs, and the answers that wait for a proc to
    change state.

    Where it sits: between the host agent (zh_agent.c) and the handshakes
    (zh_attach.c: READY) above it, and the process manager (zh_procs.c)
    below, whose events it receives. It routes nothing: answers are posted
    to the outbox (zh_send_post), routes are added and removed in
    zh_routes, STOP goes out through zh_send. It reports upward through
    its events: the end of the broker's own bulk stop (shutdown).

    LC-1 (one outcome): every waiter of a proc is answered exactly once,
    with the same terminal state: concurrent stops coalesce.
    LC-2 (no orphan routes): a proc's route exists only while the proc is
    ready or stopping; its end removes it and marks its id gone, so SENDs
    to it are returned PROC_GONE until the name is spawned again.
    LC-3 (late READY): a proc stopped while starting could not get its
    STOP; its READY, when it comes, connects it and gets it the STOP.
    LC-4 (always answered): a request that cannot be kept waiting (no
    memory for its waiter) is answered at once with an error.
*/
#ifndef ZH_LIFECYCLE_H
#define ZH_LIFECYCLE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "zh_config.h"
#include "zh_procs.h"
#include "zh_routes.h"
#include "zh_send.h"
#include "zh_watch.h"

typedef struct _zh_lifecycle_t zh_lifecycle_t;

typedef struct {
    //  A bulk stop started with shutdown = true ended (its answer, if it
    //  had a reply port, is posted): the broker may drain now.
    void (*children_stopped) (void *arg);
    void *arg;
} zh_lifecycle_events_t;

//  Where the procs connect and what they are told.
typedef struct {
    void *zmq_ctx;               //  the broker's context (thread procs)
    const char *backend_ipc;     //  ZHOST_BACKEND
    const char *backend_inproc;  //  the backend of thread procs
    const char *host;            //  ZHOST_HOST and the endpoint of proc addresses
    const char *agent_addr;      //  src of the agent's answers
    const cpu_set_t *child_cpus; //  NULL: inherit
    zh_watch_t *watch;           //  where proc events and output lines go
} zh_lifecycle_setup_t;

zh_lifecycle_t *zh_lifecycle_new (const zh_config_t *config, const zh_lifecycle_setup_t *setup,
                                  zh_routes_t *routes, zh_send_t *send,
                                  zh_lifecycle_events_t events);
//  Ends every child (SIGKILL to each group) and waits for them.
void zh_lifecycle_destroy (zh_lifecycle_t **self_p);

//  The process manager, for the loop (reap, tick, poll).
zh_procs_t *zh_lifecycle_procs (zh_lifecycle_t *self);

//  READY on the backend from rid: accepted only from a starting proc
//  whose name is rid (else ERROR 403).
void zh_lifecycle_ready (zh_lifecycle_t *self, const uint8_t *rid, size_t rid_len,
                         const zh_body_t *body, int64_t now);

//  A request to answer: where the answer goes and what it echoes.
typedef struct {
    const char *reply;     //  the reply port (NUL-terminated)
    bool has_seq;          //  the request's meta had a seq
    int64_t seq;           //  that seq
    bool admin;            //  the caller may see admin-only fields (status's tail)
    const zh_conn_t *from; //  the connection it came on (watch, unwatch, logs)
} zh_request_t;

//  A proc op of the host agent (spawn, stop, kill, status, list,
//  stop_all, logs, watch, unwatch). Packs the answer into pk and returns true, or returns false
//  when the answer will be posted later (a waiter was stored).
bool zh_lifecycle_op (zh_lifecycle_t *self, const char *op, const msgpack_object *args,
                      const zh_request_t *request, msgpack_packer *pk, int64_t now);

//  Stop every live proc, at most max_in_flight at once (the config's
//  values when < 0). With request (its reply not NULL) the outcome is
//  posted as the answer {attempted, stopped, failed}; with shutdown the
//  events' children_stopped follows. 0, or -1 when it could not start
//  (out of memory: then children_stopped is called at once if shutdown).
int zh_lifecycle_stop_all (zh_lifecycle_t *self, int64_t timeout_ms, int64_t max_in_flight,
                           const char *reason, const zh_request_t *request, bool shutdown,
                           int64_t now);

//  Spawn the --spawn procs of the config. 0, or -1 with err (exit 2 for a
//  bad command or name, 1 when it could not be started).
int zh_lifecycle_spawn_config (zh_lifecycle_t *self, int64_t now, zh_error_t *err);

#endif
