/*  zh_metrics.h — /metrics (Prometheus text) and /healthz over HTTP.

    Where it sits: beside the router, at the top of the parts it reads
    (stats, routes, peers, procs, watch, the outbox); zh_broker.c makes it
    when --metrics is set and polls its one fd in the loop. Nothing calls
    into it but the loop, and it writes nothing but its own counters.

    HTTP is libmicrohttpd's, run in its external epoll mode: the daemon's
    epoll fd sits in the broker's poll set and zh_metrics_run lets it
    accept, read and answer without blocking, on the broker's own thread
    (MX-1: no threads, no locks; a scrape is one loop turn's work).
    MX-2 (never stalls routing): a request is answered from counters and
    tables in memory, with no I/O but the reply; connections are bounded
    (ZH_METRICS_CONNECTIONS, and per client address) and time out, so a
    slow or hostile client holds a slot, never the loop.
    MX-3 (health): /healthz is 200 while the broker is serving and 503
    from the moment it starts to shut down.
*/
#ifndef ZH_METRICS_H
#define ZH_METRICS_H

#include <stdint.h>

#include "zh_config.h"
#include "zh_error.h"
#include "zh_peers.h"
#include "zh_procs.h"
#include "zh_routes.h"
#include "zh_self.h"
#include "zh_send.h"
#include "zh_stats.h"
#include "zh_watch.h"

#define ZH_METRICS_CONNECTIONS 32 //  HTTP connections at once
#define ZH_METRICS_PER_IP      8  //  of them from one client address
#define ZH_METRICS_TIMEOUT_S   10 //  an idle HTTP connection is closed after this

//  What a scrape reads (all borrowed).
typedef struct {
    const zh_stats_t *stats; //  the counter table
    zh_routes_t *routes;     //  connections by kind, per-proc in/out
    zh_peers_t *peers;       //  links: state, pending, reconnects
    zh_procs_t *procs;       //  procs by status
    zh_watch_t *watch;       //  watchers
    zh_send_t *send;         //  the outbox's depth
    const zh_self_t *me;     //  host, incarnation, phase (healthz)
} zh_metrics_parts_t;

typedef struct _zh_metrics_t zh_metrics_t;

//  Listen on addr (--metrics: PORT, HOST:PORT or [V6]:PORT; a bare port
//  is 127.0.0.1). NULL with err (exit 2: a bad address; exit 1: cannot
//  listen, e.g. the port is taken).
zh_metrics_t *zh_metrics_new (const char *addr, const zh_metrics_parts_t *parts, zh_error_t *err);
void zh_metrics_destroy (zh_metrics_t **self_p);

//  The fd to poll for input (libmicrohttpd's epoll fd).
int zh_metrics_fd (zh_metrics_t *self);

//  ms until zh_metrics_run is due without input (a timeout, or data it
//  already holds: 0); -1 when only input can make it due.
int64_t zh_metrics_timeout (zh_metrics_t *self);

//  Accept, read and answer what is ready; never blocks.
void zh_metrics_run (zh_metrics_t *self);

//  Where it listens, "HOST:PORT" with the port it got (for port 0).
const char *zh_metrics_bound (zh_metrics_t *self);

//  The Prometheus text of one scrape into a malloc'd buffer (*len bytes,
//  NUL-terminated), or NULL. Served at /metrics; for tests.
char *zh_metrics_render (zh_metrics_t *self, size_t *len);

#endif
