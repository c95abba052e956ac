/*  zh_broker_int.h — the broker's private state, shared by its modules.

    Where it sits: zh_broker.c (sockets, loop, routing, handshakes,
    liveness, shutdown) and zh_agent.c (the host agent on the service proc)
    both work on this one struct, as Redis's modules share `server`. Only
    the broker's own files include it.
*/
#ifndef ZH_BROKER_INT_H
#define ZH_BROKER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <msgpack.h>
#include <zmq.h>

#include "zh_addr.h"
#include "zh_broker.h"
#include "zh_config.h"
#include "zh_conn.h"
#include "zh_curve.h"
#include "zh_error.h"
#include "zh_procs.h"
#include "zh_proto.h"
#include "zh_table.h"

#define ZH_SELF_MAX   (2 * ZH_CONFIG_LIST_MAX)
#define ZH_GONE_MAX   16384 //  proc ids remembered as gone (PROC_GONE)
#define ZH_FRAMES_CAP (ZH_MAX_FRAMES + 1)
#define ZH_BATCH      256 //  messages read from one socket per turn

//  The ERROR codes counted in stats, in this order.
#define ZH_REJECT_KINDS 7
extern const int zh_reject_codes[ZH_REJECT_KINDS];

typedef struct {
    uint64_t routed;                    //  SEND/RETURN delivered to a socket
    uint64_t returned[ZH_RC_COUNT];     //  RETURNs the broker made, by code
    uint64_t abandoned;                 //  RETURNs that could not be delivered
    uint64_t dropped;                   //  undeliverable SENDs without the flag
    uint64_t rejected[ZH_REJECT_KINDS]; //  ERRORs answered, by code
    uint64_t agent_requests;            //  requests the host agent served
    uint64_t agent_unanswerable;        //  agent requests with no usable reply
} zh_stats_t;

//  An agent request waiting for a proc to change state: its reply port.
typedef enum { ZH_WAIT_SPAWN = 1, ZH_WAIT_END } zh_wait_kind_t;
typedef struct _zh_waiter_t {
    zh_wait_kind_t kind;
    char *reply;
    struct _zh_waiter_t *next;
} zh_waiter_t;

//  A stop_all or shutdown request waiting for its bulk stop.
typedef struct {
    char *reply;   //  NULL for the broker's own shutdown
    bool shutdown; //  shut the broker down once answered
} zh_job_t;

struct _zh_broker_t {
    const zh_config_t *config;
    void *ctx;
    void *socks[ZH_SOCK_COUNT];
    zh_table_t *conns[ZH_SOCK_COUNT]; //  routing id → zh_conn_t, per socket
    zh_table_t *routes;               //  proc id → zh_conn_t (CLIENT, PROC)
    zh_table_t *gone;                 //  proc ids that were routes (value: 1)
    char *gone_ring[ZH_GONE_MAX];     //  oldest first, to bound `gone`
    size_t gone_head, gone_count;

    char *bound[ZH_CONFIG_LIST_MAX]; //  frontend endpoints as bound
    size_t bound_count;
    char *advertised[ZH_CONFIG_LIST_MAX];
    size_t advertised_count;
    const char *self_eps[ZH_SELF_MAX]; //  endpoints that are "self"
    size_t self_ep_lens[ZH_SELF_MAX];
    size_t self_count;
    char *backend_ipc, *backend_inproc, *control_ipc;
    char *runtime_dir, *pid_path;
    int pid_fd; //  flock'd runtime-dir lock
    int signal_fd;

    char agent_addr[ZH_ADDR_MAX + 1];   //  host_agent.service@<adv0>
    char service_addr[ZH_ADDR_MAX + 1]; //  service@<adv0>: src of RETURNs
    uint64_t incarnation;

    bool pinned;            //  --cpu: the loop and libzmq's threads on pin_cpus
    cpu_set_t pin_cpus;     //  --cpu, as far as the broker may use it
    cpu_set_t start_cpus;   //  the CPUs the broker started with (for children)
    zh_curve_t *curve;      //  CURVE on the frontend, or NULL
    zh_procs_t *procs;      //  the process manager
    bool stopping_children; //  shutdown phase 1: children first
    bool stop_all_pending;  //  the broker's own bulk stop is running

    uint64_t gen;                        //  bumped on every conns/routes change (BR-5)
    zh_conn_t *last_conn[ZH_SOCK_COUNT]; //  the last connection looked up, per socket
    uint8_t last_rid[ZH_SOCK_COUNT][ZH_RID_MAX];
    size_t last_rid_len[ZH_SOCK_COUNT];
    uint64_t last_gen[ZH_SOCK_COUNT];

    int64_t now; //  ms, monotonic, once per loop turn
    int64_t next_tick;
    bool shutting_down;
    int64_t shutdown_deadline;
    int64_t last_activity;
    volatile int stop_requested;

    zmq_msg_t rid; //  receive buffers, reused
    zmq_msg_t frames[ZH_FRAMES_CAP];
    zh_stats_t stats;
};

//  --- zh_broker.c services used by the agent ------------------------------

//  Route a message the broker made itself (an agent reply): frames are
//  consumed on success; on failure it is dropped and counted.
void zh_broker_route_internal (zh_broker_t *self, zmq_msg_t *frames, size_t count);

//  Make a RETURN of a SEND (frames[0] is its head) for code rc and send it
//  to `to`, the connection it came from. Counts and logs.
void zh_broker_bounce (zh_broker_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count,
                       const zh_head_t *head, zh_rc_t rc, const char *reason);

//  Send a control command with a body to one peer of a socket.
int zh_broker_send_body (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                         const zh_body_t *body);

//  Refuse a message with an ERROR (counted).
void zh_broker_reject (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                       int code, const char *reason);

//  Add a connection for a proc that became ready and route to it.
zh_conn_t *zh_broker_add_proc_conn (zh_broker_t *self, const uint8_t *rid, size_t rid_len,
                                    const char *proc_id);

//  A proc ended: its route goes (if any) and its id is remembered as gone.
void zh_broker_proc_gone (zh_broker_t *self, const char *proc_id);

//  Phase 2 of shutdown: BYE to every connection, drain for the linger.
void zh_broker_begin_drain (zh_broker_t *self, const char *why);

//  --- zh_lifecycle.c: procs as the broker sees them ----------------------

//  The callbacks the process manager calls.
zh_procs_events_t zh_lifecycle_events (zh_broker_t *self);

//  READY on the backend from (rid): accepted only from a starting proc
//  whose name is rid (else ERROR 403).
void zh_lifecycle_ready (zh_broker_t *self, const uint8_t *rid, size_t rid_len,
                         const zh_body_t *body);

//  A proc op of the host agent (spawn, stop, kill, status, list, stop_all,
//  shutdown). Packs the answer into pk and returns true, or returns false
//  when the answer will be sent later to reply (a waiter was stored).
bool zh_lifecycle_op (zh_broker_t *self, const char *op, const msgpack_object *request,
                      const char *reply, msgpack_packer *pk);

//  Spawn the --spawn procs of the config. 0, or -1 with err.
int zh_lifecycle_spawn_config (zh_broker_t *self, zh_error_t *err);

//  --- zh_agent.c ------------------------------------------------------

//  A SEND or RETURN for the service proc: host_agent port 1 is served,
//  anything else is returned NO_SUCH_ACTOR / NO_SUCH_PORT.
void zh_agent_deliver (zh_broker_t *self, zh_conn_t *from, zmq_msg_t *frames, size_t count,
                       const zh_head_t *head, const zh_addr_t *dest);

//  Send an answer (msgpack bytes) from the host agent to a reply port.
void zh_agent_reply (zh_broker_t *self, const char *reply, size_t reply_len, const char *answer,
                     size_t answer_size);

#endif
