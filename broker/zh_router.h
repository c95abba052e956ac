/*  zh_router.h — the hot path: drain a socket, check each message, route
    it to a local connection or the host agent, or return it.

    Where it sits: just below the loop (zh_broker.c), which calls
    zh_router_drain when a socket is readable and zh_router_flush after
    anything that may have posted to the outbox. It is the only part that
    routes (docs/design.md): handshakes go to zh_attach, requests for the
    service proc to zh_agent, messages for other brokers to zh_peers, and
    everything the broker makes itself comes
    back through the outbox and the same checks.
*/
#ifndef ZH_ROUTER_H
#define ZH_ROUTER_H

#include <stdint.h>

#include "zh_agent.h"
#include "zh_attach.h"
#include "zh_config.h"
#include "zh_curve.h"
#include "zh_peers.h"
#include "zh_self.h"
#include "zh_routes.h"
#include "zh_send.h"
#include "zh_stats.h"

typedef struct _zh_router_t zh_router_t;

//  The parts the router hands messages to, and what it reads.
typedef struct {
    void *const *socks;  //  the broker's ROUTERs, by zh_sock_t
    zh_routes_t *routes; //  connections and routes
    zh_send_t *send;     //  forwarding, RETURNs, ERRORs, the outbox
    zh_attach_t *attach; //  control commands
    zh_agent_t *agent;   //  requests for the service proc
    zh_peers_t *peers;   //  links to other brokers
    zh_curve_t *curve;   //  CURVE keys (admin rights), or NULL
    zh_stats_t *stats;   //  the counters
    const zh_self_t *me; //  the broker: its phase (read only)
} zh_router_parts_t;

zh_router_t *zh_router_new (const zh_config_t *config, const zh_router_parts_t *parts);
void zh_router_destroy (zh_router_t **self_p);

//  Read up to ZH_ROUTER_BATCH messages from one socket without blocking,
//  handle each, then route what they posted to the outbox.
#define ZH_ROUTER_BATCH 256
void zh_router_drain (zh_router_t *self, zh_sock_t sock, int64_t now);

//  The same for one of our peer links (a DEALER: no routing id).
void zh_router_drain_link (zh_router_t *self, zh_conn_t *link, int64_t now);

//  Route everything in the outbox (messages the broker made itself).
void zh_router_flush (zh_router_t *self, int64_t now);

//  When the last message was read (for the drain's quiet test).
int64_t zh_router_last_activity (zh_router_t *self);

#endif
