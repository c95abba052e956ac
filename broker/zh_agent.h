/*  zh_agent.h — the host agent: the control API on the service proc.

    Where it sits: the router hands it every SEND whose dest proc is
    `service` at a "self" endpoint (it never arrives over a socket). It
    is the actor `host_agent.service@<endpoint>`, port 1 (docs/protocol.md
    §8): a request's first payload part is a msgpack map {"op": str, …}
    and its meta names a `reply` port; the answer is a SEND to that port,
    posted to the outbox (zh_send_answer), {"ok": true, …} or {"ok":
    false, "error": {code, message}}. Proc ops go to zh_lifecycle; the
    shutdown op is reported upward (events), since the loop owns the
    broker's phase.

    AG-1 (rights by key): admin ops run only for a message that arrived on
    the control socket or under a --curve-admin CURVE key; the router
    decides that per message, from the message's own metadata, never from
    the connection or its routing id.
    AG-2 (answers go home): `reply` must be a port of the requester's own
    principal; any other reply gets ERROR 403 and no answer, so the agent
    can never be made to send to a third party.
    AG-3 (bounded requests): a request is decoded only after the codec's
    guard (no declared count is trusted) and only up to
    ZH_AGENT_REQUEST_MAX bytes; anything else is BAD_REQUEST.
*/
#ifndef ZH_AGENT_H
#define ZH_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "zh_config.h"
#include "zh_conn.h"
#include "zh_lifecycle.h"
#include "zh_peers.h"
#include "zh_self.h"
#include "zh_routes.h"
#include "zh_send.h"
#include "zh_stats.h"

#define ZH_AGENT_REQUEST_MAX (256 * 1024) //  bytes of one request map (AG-3)

typedef struct _zh_agent_t zh_agent_t;

typedef struct {
    //  The shutdown op: stop every child (timeout_ms, max_in_flight; < 0:
    //  the config's), answer request when they have stopped, then drain.
    void (*shutdown) (void *arg, const zh_request_t *request, int64_t timeout_ms,
                      int64_t max_in_flight);
    void *arg;
} zh_agent_events_t;

//  me: the broker it speaks for (read only: the loop writes it).
//  config: what the `config` op reports.
zh_agent_t *zh_agent_new (const zh_config_t *config, const zh_self_t *me, zh_routes_t *routes,
                          zh_peers_t *peers, zh_send_t *send, zh_stats_t *stats,
                          zh_lifecycle_t *lifecycle, zh_agent_events_t events);
void zh_agent_destroy (zh_agent_t **self_p);

//  A SEND or RETURN for the service proc from a connection; admin: the
//  message may run admin ops (AG-1). host_agent port 1 is served;
//  anything else is returned NO_SUCH_ACTOR / NO_SUCH_PORT.
void zh_agent_deliver (zh_agent_t *self, zh_conn_t *from, bool admin, zmq_msg_t *frames,
                       size_t count, const zh_head_t *head, const zh_addr_t *dest, int64_t now);

#endif
