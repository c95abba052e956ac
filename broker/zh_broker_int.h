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
#include <zmq.h>

#include "zh_addr.h"
#include "zh_broker.h"
#include "zh_config.h"
#include "zh_conn.h"
#include "zh_error.h"
#include "zh_proto.h"
#include "zh_table.h"

#define ZH_SELF_MAX (2 * ZH_CONFIG_LIST_MAX)
#define ZH_GONE_MAX 16384        //  proc ids remembered as gone (PROC_GONE)
#define ZH_FRAMES_CAP (ZH_MAX_FRAMES + 1)
#define ZH_BATCH 256             //  messages read from one socket per turn

//  The ERROR codes counted in stats, in this order.
#define ZH_REJECT_KINDS 7
extern const int zh_reject_codes[ZH_REJECT_KINDS];

typedef struct {
    uint64_t routed;                  //  SEND/RETURN delivered to a socket
    uint64_t returned[ZH_RC_COUNT];   //  RETURNs the broker made, by code
    uint64_t abandoned;               //  RETURNs that could not be delivered
    uint64_t dropped;                 //  undeliverable SENDs without the flag
    uint64_t rejected[ZH_REJECT_KINDS]; //  ERRORs answered, by code
    uint64_t agent_requests;          //  requests the host agent served
    uint64_t agent_unanswerable;      //  agent requests with no usable reply
} zh_stats_t;

struct _zh_broker_t {
    const zh_config_t *config;
    void *ctx;
    void *socks[ZH_SOCK_COUNT];
    zh_table_t *conns[ZH_SOCK_COUNT]; //  routing id → zh_conn_t, per socket
    zh_table_t *routes;               //  proc id → zh_conn_t (CLIENT, PROC)
    zh_table_t *gone;                 //  proc ids that were routes (value: 1)
    char *gone_ring[ZH_GONE_MAX];     //  oldest first, to bound `gone`
    size_t gone_head, gone_count;

    char *bound[ZH_CONFIG_LIST_MAX];  //  frontend endpoints as bound
    size_t bound_count;
    char *advertised[ZH_CONFIG_LIST_MAX];
    size_t advertised_count;
    const char *self_eps[ZH_SELF_MAX];  //  endpoints that are "self"
    size_t self_ep_lens[ZH_SELF_MAX];
    size_t self_count;
    char *backend_ipc, *backend_inproc, *control_ipc;
    char *runtime_dir, *pid_path;
    int pid_fd;                       //  flock'd runtime-dir lock
    int signal_fd;

    char agent_addr[ZH_ADDR_MAX + 1];   //  host_agent.service@<adv0>
    char service_addr[ZH_ADDR_MAX + 1]; //  service@<adv0>: src of RETURNs
    uint64_t incarnation;

    int64_t now;                      //  ms, monotonic, once per loop turn
    int64_t next_tick;
    bool shutting_down;
    int64_t shutdown_deadline;
    int64_t last_activity;
    volatile int stop_requested;

    zmq_msg_t rid;                    //  receive buffers, reused
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

//  --- zh_agent.c ------------------------------------------------------

//  A SEND or RETURN for the service proc: host_agent port 1 is served,
//  anything else is returned NO_SUCH_ACTOR / NO_SUCH_PORT.
void zh_agent_deliver (zh_broker_t *self, zh_conn_t *from, zmq_msg_t *frames, size_t count,
                       const zh_head_t *head, const zh_addr_t *dest);

#endif
