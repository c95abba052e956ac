/*  zh_broker.c — zhost-broker: the loop, and the wiring of its parts.

    Where it sits: the top of broker/ and the only file that knows every
    part (docs/design.md, "The broker's parts"). zh_broker_new builds them
    bottom up:

        runtime (dir, sockets, endpoints, CPUs)
        stats → routes → send (and its outbox) → curve
        lifecycle (procs, launch) → agent → attach → router

    and zh_broker_run polls the three ROUTERs, the signalfd, the ZAP
    socket and the process manager's epoll set, handing each to its part.
    Parts below report upward through events (the lifecycle's
    children_stopped, the agent's shutdown), never by calling back here.

    Shutdown is one phase (zh_self.h), written only here:
        serving → stopping: SIGTERM, SIGINT, zh_broker_stop or the shutdown
            op; ATTACH/HELLO get 503; every child is stopped, at most
            max_in_flight at once;
        stopping → draining: the children have stopped (and the shutdown
            op was answered); BYE to every connection; SENDs are returned
            SHUTDOWN;
        draining → done: at the linger deadline, or once all is quiet.
*/
#include "zh_broker.h"

#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "zh_agent.h"
#include "zh_attach.h"
#include "zh_curve.h"
#include "zh_watch.h"
#include "zh_lifecycle.h"
#include "zh_log.h"
#include "zh_metrics.h"
#include "zh_peers.h"
#include "zh_router.h"
#include "zh_routes.h"
#include "zh_runtime.h"
#include "zh_self.h"
#include "zh_send.h"
#include "zh_stats.h"

struct _zh_broker_t {
    zh_config_t *config;         //  the settings (borrowed; a reload updates some)
    int reload_argc;             //  what SIGHUP reloads from (zh_broker_set_reload)
    char **reload_argv;          //  main's argv (borrowed), or NULL: no reload
    char **reload_envp;          //  main's environ (borrowed)
    void *ctx;                   //  the zmq context
    zh_runtime_t *runtime;       //  dir, sockets, endpoints, CPUs
    zh_stats_t stats;            //  the one counter table
    zh_routes_t *routes;         //  connections and routes
    zh_send_t *send;             //  sending, and the outbox
    zh_peers_t *peers;           //  links to other brokers
    zh_watch_t *watch;           //  watchers of procs and links (watch, logs follow)
    zh_curve_t *curve;           //  CURVE on the frontend, or NULL
    zh_lifecycle_t *lifecycle;   //  procs and their ops
    zh_agent_t *agent;           //  the host agent
    zh_attach_t *attach;         //  handshakes and liveness
    zh_router_t *router;         //  the hot path
    zh_metrics_t *metrics;       //  /metrics and /healthz (--metrics), or NULL
    zh_self_t me;                //  address, incarnation, phase: written here only
    bool drain_due;              //  children stopped: drain at the next turn
    char drain_why[64];          //  what started the shutdown
    int signal_fd;               //  SIGTERM, SIGINT, SIGHUP, SIGCHLD
    int64_t now;                 //  ms, monotonic, once per loop turn (BR-4)
    int64_t next_tick;           //  when liveness runs next
    int64_t drain_started;       //  when the drain began
    volatile int stop_requested; //  zh_broker_stop (another thread)
};

//  ---------------------------------------------------------------------
//  Shutdown

//  serving → stopping (request: the shutdown op's, or NULL).
static void
s_begin_shutdown (zh_broker_t *self, const char *why, const zh_request_t *request,
                  int64_t timeout_ms, int64_t max_in_flight)
{
    if (self->me.phase != ZH_PHASE_SERVING) return;
    self->me.phase = ZH_PHASE_STOPPING;
    snprintf (self->drain_why, sizeof self->drain_why, "%s", why);
    zh_info ("shutdown", "reason=%s live_procs=%zu", why,
             zh_procs_live_count (zh_lifecycle_procs (self->lifecycle)));
    zh_lifecycle_stop_all (self->lifecycle, timeout_ms, max_in_flight, "broker shutdown", request,
                           true, self->now);
}

//  stopping → draining: BYE to every connection (after routing what the
//  outbox holds: the shutdown op's answer goes before its BYE).
static void
s_begin_drain (zh_broker_t *self)
{
    self->drain_due = false;
    if (self->me.phase >= ZH_PHASE_DRAINING) return;
    zh_router_flush (self->router, self->now);
    self->me.phase = ZH_PHASE_DRAINING;
    self->drain_started = self->now;
    zh_info ("drain", "reason=\"%s; children stopped\" linger_ms=%lld", self->drain_why,
             (long long)self->config->linger_ms);
    zh_attach_bye_all (self->attach, "shutdown");
    zh_peers_bye_all (self->peers, "shutdown");
    zh_router_flush (self->router, self->now); //  the SHUTDOWN RETURNs of what waited
}

//  The lifecycle's event: the shutdown's bulk stop ended.
static void
s_children_stopped (void *arg)
{
    zh_broker_t *self = (zh_broker_t *)arg;
    self->drain_due = true; //  at the top of the next turn, outside any part
}

//  The agent's event: the shutdown op.
static void
s_shutdown_op (void *arg, const zh_request_t *request, int64_t timeout_ms, int64_t max_in_flight)
{
    zh_broker_t *self = (zh_broker_t *)arg;
    s_begin_shutdown (self, "shutdown op", request, timeout_ms, max_in_flight);
}

static void
s_handle_signals (zh_broker_t *self)
{
    struct signalfd_siginfo info;
    while (read (self->signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT)
            s_begin_shutdown (self, info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", NULL, -1, -1);
        else if (info.ssi_signo == SIGHUP)
            zh_broker_reload (self);
        else if (info.ssi_signo == SIGCHLD)
            zh_procs_reap (zh_lifecycle_procs (self->lifecycle), self->now);
    }
}

//  ---------------------------------------------------------------------
//  Reload (SIGHUP)

typedef struct {
    zh_broker_t *self;    //  the broker reloading
    size_t applied;       //  changes taken at once (log-level)
    size_t curve_applied; //  key directory paths changed (taken if they load)
    size_t restart;       //  changes that wait for a restart
    bool curve_changed;   //  a key directory's path changed
    bool level_changed;   //  log-level changed
} s_reload_t;

static void
s_reload_change (void *arg, const char *key, const char *old_value, const char *new_value,
                 bool reloadable)
{
    s_reload_t *r = (s_reload_t *)arg;
    bool curve_key = strncmp (key, "curve-", 6) == 0;
    //  Key directories apply only to a broker that runs CURVE already.
    if (reloadable && curve_key && !r->self->curve) reloadable = false;
    char q1[200], q2[200];
    zh_log_quote (q1, sizeof q1, old_value, strlen (old_value));
    zh_log_quote (q2, sizeof q2, new_value, strlen (new_value));
    if (reloadable) {
        if (curve_key)
            r->curve_changed = true, r->curve_applied++;
        else
            r->level_changed = true, r->applied++;
        zh_info ("reload", "key=%s old=%s new=%s action=applied", key, q1, q2);
    } else {
        r->restart++;
        zh_warn ("reload", "key=%s old=%s new=%s action=\"needs a restart\"%s", key, q1, q2,
                 curve_key ? " note=\"CURVE is turned on or off only at start (--curve-secret)\""
                           : "");
    }
}

void
zh_broker_set_reload (zh_broker_t *self, int argc, char **argv, char **envp)
{
    self->reload_argc = argc;
    self->reload_argv = argv;
    self->reload_envp = envp;
}

void
zh_broker_reload (zh_broker_t *self)
{
    if (!self->reload_argv) {
        zh_info ("reload",
                 "result=ignored note=\"an embedded broker has no command line to reload\"");
        return;
    }
    zh_config_t *fresh = zh_config_new ();
    zh_error_t err;
    if (!fresh || zh_config_load (fresh, self->reload_argc, self->reload_argv, self->reload_envp,
                                  &err) != 0) {
        char q[400];
        const char *why = fresh ? err.reason : "out of memory";
        zh_warn ("reload",
                 "result=refused error=%s note=\"nothing changed: the running settings stay\"",
                 zh_log_quote (q, sizeof q, why, strlen (why)));
        zh_config_destroy (&fresh);
        return;
    }
    s_reload_t r = {.self = self};
    zh_config_diff (self->config, fresh, s_reload_change, &r);
    if (r.level_changed) {
        zh_log_level_t level = ZH_LOG_INFO;
        zh_log_level_parse (fresh->log_level, &level);
        zh_config_adopt (self->config, fresh, "log-level");
        zh_log_set_level (level);
    }
    size_t revoked = 0;
    if (self->curve) {
        //  The directories are read again even when their paths stayed:
        //  that is how a key is added or removed.
        if (zh_curve_reload (self->curve, fresh->curve_allow, fresh->curve_admin,
                             fresh->curve_peers, &err) != 0) {
            char q[400];
            zh_warn ("reload", "result=partial error=%s note=\"the CURVE keys in use stay\"",
                     zh_log_quote (q, sizeof q, err.reason, strlen (err.reason)));
        } else {
            r.applied += r.curve_applied;
            zh_config_adopt (self->config, fresh, "curve-allow");
            zh_config_adopt (self->config, fresh, "curve-admin");
            zh_config_adopt (self->config, fresh, "curve-peers");
            revoked = zh_attach_revoke (self->attach);
            zh_info ("reload", "curve=reloaded peers=%zu revoked=%zu",
                     zh_curve_peer_count (self->curve), revoked);
        }
    }
    zh_info ("reload", "result=done applied=%zu restart_needed=%zu", r.applied, r.restart);
    zh_config_destroy (&fresh);
}

//  ---------------------------------------------------------------------
//  Construction

int
zh_broker_block_signals (void)
{
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGTERM);
    sigaddset (&set, SIGINT);
    sigaddset (&set, SIGHUP);
    sigaddset (&set, SIGCHLD);
    return pthread_sigmask (SIG_BLOCK, &set, NULL) == 0 ? 0 : -1;
}

//  Every connection and proc pipe is an fd: take the hard limit, and say
//  what it is (past it, libzmq stops accepting connections silently).
static void
s_raise_fd_limit (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        rlim_t was = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit (RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = was;
    }
    zh_info ("fds",
             "max=%llu note=\"each client, peer and proc costs fds: about one per "
             "connection and two per proc\"",
             (unsigned long long)limit.rlim_cur);
}

static int
s_curve_server (void *arg, void *socket)
{
    return zh_curve_apply ((zh_curve_t *)arg, socket);
}

//  The parts above the sockets, bottom up.
static int
s_build_parts (zh_broker_t *self, zh_error_t *err)
{
    zh_runtime_t *rt = self->runtime;
    const char *host = zh_runtime_advertised (rt, 0);
    snprintf (self->me.host, sizeof self->me.host, "%s", host);
    zh_actor_addr_format (self->me.agent_addr, sizeof self->me.agent_addr, "host_agent", "service",
                          host);
    zh_proc_addr_format (self->me.service_addr, sizeof self->me.service_addr, "service", host);
    self->routes = zh_routes_new ();
    if (!self->routes) return zh_error_exit (err, 1, "out of memory");
    for (size_t i = 0; i < zh_runtime_self_count (rt); i++)
        if (zh_routes_add_self (self->routes, zh_runtime_self (rt, i)) != 0)
            return zh_error_exit (err, 1, "out of memory");
    self->send = zh_send_new (zh_runtime_sockets (rt), &self->stats, host, self->me.service_addr,
                              (uint8_t)self->config->ttl);
    if (self->send) self->watch = zh_watch_new (self->routes, self->send, self->me.agent_addr);
    if (self->watch)
        self->peers =
            zh_peers_new (self->ctx, self->config, &self->me, self->send, self->curve, self->watch);
    zh_lifecycle_setup_t lsetup = {.zmq_ctx = self->ctx,
                                   .backend_ipc = zh_runtime_backend_ipc (rt),
                                   .backend_inproc = zh_runtime_backend_inproc (rt),
                                   .host = host,
                                   .agent_addr = self->me.agent_addr,
                                   .child_cpus = zh_runtime_start_cpus (rt),
                                   .watch = self->watch};
    zh_lifecycle_events_t levents = {.children_stopped = s_children_stopped, .arg = self};
    if (self->peers)
        self->lifecycle =
            zh_lifecycle_new (self->config, &lsetup, self->routes, self->send, levents);
    zh_agent_events_t aevents = {.shutdown = s_shutdown_op, .arg = self};
    if (self->lifecycle)
        self->agent = zh_agent_new (self->config, &self->me, self->routes, self->peers, self->send,
                                    &self->stats, self->lifecycle, aevents);
    if (self->agent)
        self->attach = zh_attach_new (self->config, &self->me, self->routes, self->send,
                                      self->lifecycle, self->curve);
    zh_router_parts_t parts = {.socks = zh_runtime_sockets (rt),
                               .routes = self->routes,
                               .send = self->send,
                               .attach = self->attach,
                               .agent = self->agent,
                               .peers = self->peers,
                               .curve = self->curve,
                               .stats = &self->stats,
                               .me = &self->me};
    if (self->attach) self->router = zh_router_new (self->config, &parts);
    if (!self->router) return zh_error_exit (err, 1, "out of memory");
    if (self->config->metrics) {
        zh_metrics_parts_t mparts = {.stats = &self->stats,
                                     .routes = self->routes,
                                     .peers = self->peers,
                                     .procs = zh_lifecycle_procs (self->lifecycle),
                                     .watch = self->watch,
                                     .send = self->send,
                                     .me = &self->me};
        self->metrics = zh_metrics_new (self->config->metrics, &mparts, err);
        if (!self->metrics) return -1;
    }
    return 0;
}

static void
s_log_start (zh_broker_t *self)
{
    zh_runtime_t *rt = self->runtime;
    if (self->curve) {
        char q[64];
        const char *key = zh_curve_public_txt (self->curve);
        zh_info ("security", "curve=on public_key=%s peers=%zu",
                 zh_log_quote (q, sizeof q, key, strlen (key)), zh_curve_peer_count (self->curve));
    } else
        zh_warn ("security", "curve=off note=\"the frontend is open to anyone who can reach it: "
                             "use it on a trusted network only\"");
    for (size_t i = 0; i < zh_runtime_bound_count (rt); i++)
        zh_info ("listen", "frontend=%s advertise=%s", zh_runtime_bound (rt, i),
                 zh_runtime_advertised (rt, i < zh_runtime_advertised_count (rt) ? i : 0));
    zh_info ("listen", "backend=%s control=%s incarnation=%llu", zh_runtime_backend_ipc (rt),
             zh_runtime_control_ipc (rt), (unsigned long long)self->me.incarnation);
    if (self->metrics)
        zh_info ("listen", "metrics=http://%s/metrics healthz=http://%s/healthz",
                 zh_metrics_bound (self->metrics), zh_metrics_bound (self->metrics));
}

zh_broker_t *
zh_broker_new (zh_config_t *config, zh_error_t *err)
{
    //  A closed log pipe must never kill the broker: EPIPE drops the line.
    signal (SIGPIPE, SIG_IGN);
    zh_broker_t *self = (zh_broker_t *)calloc (1, sizeof (zh_broker_t));
    if (!self) {
        zh_error_exit (err, 1, "out of memory");
        return NULL;
    }
    self->config = config;
    self->signal_fd = -1;
    self->me.incarnation = zh_random_u64 ();
    self->now = zclock_mono ();
    if (config->frontend_count == 0) {
        zh_error_exit (err, 2, "--frontend: at least one endpoint is needed");
        goto fail;
    }
    if (config->batch_max_bytes > config->max_msg_bytes) {
        //  §14: batch_max_bytes is never over max_msg_bytes.
        zh_info ("batch", "batch_max_bytes=%lld note=\"lowered to --max-msg-bytes\"",
                 (long long)config->max_msg_bytes);
        config->batch_max_bytes = config->max_msg_bytes;
    }
    self->runtime = zh_runtime_new (config, err);
    if (!self->runtime) goto fail;
    self->ctx = zmq_ctx_new ();
    if (!self->ctx) {
        zh_error_exit (err, 1, "cannot create a ZeroMQ context: %s", zmq_strerror (errno));
        goto fail;
    }
    zmq_ctx_set (self->ctx, ZMQ_BLOCKY, 0);
    //  libzmq's default is 1023 sockets a context: the links alone may take
    //  ZH_PEER_SOCKETS each (PL-5), besides thread procs and our own.
    zmq_ctx_set (self->ctx, ZMQ_MAX_SOCKETS, (int)(config->max_peers * ZH_PEER_SOCKETS + 1024));
    if (config->cpus && zh_runtime_pin_setup (self->runtime, self->ctx, err) != 0) goto fail;
    if (config->curve_secret || config->curve_allow || config->curve_admin || config->curve_peers) {
        self->curve = zh_curve_new (self->ctx, config->curve_secret, config->curve_allow,
                                    config->curve_admin, config->curve_peers, err);
        if (!self->curve) goto fail;
    }
    if (zh_runtime_bind (self->runtime, self->ctx, self->curve ? s_curve_server : NULL, self->curve,
                         err) != 0)
        goto fail;
    if (s_build_parts (self, err) != 0) goto fail;
    s_raise_fd_limit ();

    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGTERM);
    sigaddset (&set, SIGINT);
    sigaddset (&set, SIGHUP);
    sigaddset (&set, SIGCHLD);
    self->signal_fd = signalfd (-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (self->signal_fd < 0) {
        zh_error_exit (err, 1, "signalfd: %s", strerror (errno));
        goto fail;
    }
    if (zh_lifecycle_spawn_config (self->lifecycle, self->now, err) != 0) goto fail;
    s_log_start (self);
    return self;
fail:
    zh_broker_destroy (&self);
    return NULL;
}

void
zh_broker_print_endpoints (zh_broker_t *self, FILE *out)
{
    zh_runtime_t *rt = self->runtime;
    for (size_t i = 0; i < zh_runtime_bound_count (rt); i++)
        fprintf (out, "frontend %s\n", zh_runtime_bound (rt, i));
    for (size_t i = 0; i < zh_runtime_advertised_count (rt); i++)
        fprintf (out, "advertise %s\n", zh_runtime_advertised (rt, i));
    fprintf (out, "backend %s\n", zh_runtime_backend_ipc (rt));
    fprintf (out, "control %s\n", zh_runtime_control_ipc (rt));
    if (self->metrics) fprintf (out, "metrics %s\n", zh_metrics_bound (self->metrics));
    fprintf (out, "ready\n");
    fflush (out);
}

void
zh_broker_destroy (zh_broker_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_broker_t *self = *self_p;
    //  Children first: no child outlives the broker.
    zh_lifecycle_destroy (&self->lifecycle);
    zh_metrics_destroy (&self->metrics);
    zh_router_destroy (&self->router);
    zh_attach_destroy (&self->attach);
    zh_agent_destroy (&self->agent);
    zh_peers_destroy (&self->peers);
    zh_watch_destroy (&self->watch);
    zh_send_destroy (&self->send);
    //  The sockets close with the linger (queued BYEs, last deliveries),
    //  before the context ends.
    zh_runtime_t *rt = self->runtime;
    self->runtime = NULL;
    if (rt) {
        void *const *socks = zh_runtime_sockets (rt);
        int linger = (int)self->config->linger_ms;
        for (int s = 0; s < ZH_SOCK_COUNT; s++)
            if (socks[s]) zmq_setsockopt (socks[s], ZMQ_LINGER, &linger, sizeof linger);
    }
    zh_runtime_destroy (&rt); //  closes the sockets, removes the socket and pid files
    zh_curve_destroy (&self->curve);
    if (self->ctx) zmq_ctx_term (self->ctx);
    zh_routes_destroy (&self->routes);
    if (self->signal_fd >= 0) close (self->signal_fd);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  The loop

int
zh_broker_run (zh_broker_t *self)
{
    int64_t tick_ms = self->config->heartbeat_ms / 4;
    if (tick_ms < 5) tick_ms = 5;
    zh_procs_t *procs = zh_lifecycle_procs (self->lifecycle);
    void *const *socks = zh_runtime_sockets (self->runtime);
    self->now = zclock_mono ();
    self->next_tick = self->now + tick_ms;
    zh_procs_reap (procs, self->now); //  a --spawn child may have died already
    zh_runtime_pin_loop (self->runtime);

    //  The poll set: fixed items (the proc pipes are one epoll fd), then
    //  one per peer link, which grows as links are first used.
    enum { S_SIGNALS = ZH_SOCK_COUNT, S_PROCS, S_METRICS, S_ZAP, S_FIXED };
    size_t room = S_FIXED + 8;
    zmq_pollitem_t *items = (zmq_pollitem_t *)calloc (room, sizeof (zmq_pollitem_t));
    if (!items) {
        zh_err ("poll", "error=\"out of memory\"");
        return 1;
    }
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        items[s] = (zmq_pollitem_t){socks[s], 0, ZMQ_POLLIN, 0};
    items[S_SIGNALS] = (zmq_pollitem_t){NULL, self->signal_fd, ZMQ_POLLIN, 0};
    items[S_PROCS] = (zmq_pollitem_t){NULL, zh_procs_poll_fd (procs), ZMQ_POLLIN, 0};
    //  Without --metrics, fd -1: zmq_poll skips it.
    items[S_METRICS] = self->metrics
                           ? (zmq_pollitem_t){NULL, zh_metrics_fd (self->metrics), ZMQ_POLLIN, 0}
                           : (zmq_pollitem_t){NULL, -1, 0, 0};
    //  The ZAP socket only with CURVE; the links follow from `base` on.
    if (self->curve)
        items[S_ZAP] = (zmq_pollitem_t){zh_curve_zap_socket (self->curve), 0, ZMQ_POLLIN, 0};
    const size_t base = self->curve ? S_FIXED : S_ZAP;
    int code = 0;
    int64_t peers_at = -1; //  when a link's next deadline falls (-1: none)

    while (true) {
        self->now = zclock_mono ();
        if (self->stop_requested) s_begin_shutdown (self, "stop", NULL, -1, -1);
        zh_router_flush (self->router, self->now); //  what the last turn's events posted
        if (self->drain_due) s_begin_drain (self);
        if (self->me.phase == ZH_PHASE_DRAINING) {
            //  Done at the deadline, or once the connections went quiet.
            int64_t since = self->now - self->drain_started;
            bool quiet = self->now - zh_router_last_activity (self->router) >= 50 && since >= 50;
            if (since >= self->config->linger_ms || quiet) break;
        }
        bool ticked = self->now >= self->next_tick;
        if (ticked) {
            //  Reap here too: embedded, SIGCHLD may go to another thread.
            zh_procs_reap (procs, self->now);
            zh_attach_tick (self->attach, self->now);
            self->next_tick = self->now + tick_ms;
        }
        if (ticked || (peers_at >= 0 && self->now >= peers_at)) {
            //  Links: heartbeats, liveness, delivery timeouts (PL-2: due at
            //  peers_at, so a deadline is met to the ms, not the tick).
            int64_t due = zh_peers_tick (self->peers, self->now);
            peers_at = due >= 0 ? self->now + due : -1;
            zh_router_flush (self->router, self->now); //  RETURNs of what waited too long
        }
        int64_t timeout = self->next_tick - self->now;
        if (peers_at >= 0 && peers_at - self->now < timeout) timeout = peers_at - self->now;
        int64_t procs_due = zh_procs_tick (procs, self->now);
        zh_router_flush (self->router, self->now); //  answers the tick settled (READY_TIMEOUT)
        if (procs_due >= 0 && procs_due < timeout) timeout = procs_due;
        int64_t metrics_due = self->metrics ? zh_metrics_timeout (self->metrics) : -1;
        if (metrics_due >= 0 && metrics_due < timeout) timeout = metrics_due;
        if (self->me.phase == ZH_PHASE_DRAINING && timeout > 10) timeout = 10;
        if (timeout > 100) timeout = 100; //  zh_broker_stop is seen within 100 ms
        if (timeout < 0 || self->drain_due) timeout = 0;

        size_t links = zh_peers_count (self->peers);
        if (base + links > room) {
            zmq_pollitem_t *more =
                (zmq_pollitem_t *)realloc (items, (base + links) * sizeof (zmq_pollitem_t));
            if (!more)
                links = room - base; //  out of memory: poll the links we can
            else {
                items = more;
                room = base + links;
            }
        }
        for (size_t i = 0; i < links; i++) {
            void *socket = zh_peers_link (self->peers, i)->link_socket;
            items[base + i] = socket ? (zmq_pollitem_t){socket, 0, ZMQ_POLLIN, 0}
                                     : (zmq_pollitem_t){NULL, -1, 0, 0};
        }
        int rc = zmq_poll (items, (int)(base + links), (long)timeout);
        if (rc == -1) {
            if (errno == EINTR) continue;
            zh_err ("poll", "error=%s", zmq_strerror (errno));
            code = 1;
            break;
        }
        self->now = zclock_mono ();
        for (int s = 0; s < ZH_SOCK_COUNT; s++)
            if (items[s].revents & ZMQ_POLLIN)
                zh_router_drain (self->router, (zh_sock_t)s, self->now);
        if (items[S_SIGNALS].revents & ZMQ_POLLIN) s_handle_signals (self);
        if (items[S_PROCS].revents & ZMQ_POLLIN) zh_procs_poll (procs);
        //  HTTP last: a scrape reads the counters this turn left (MX-2).
        if (self->metrics && ((items[S_METRICS].revents & ZMQ_POLLIN) || metrics_due == 0 ||
                              (metrics_due > 0 && rc == 0)))
            zh_metrics_run (self->metrics);
        if (self->curve && (items[S_ZAP].revents & ZMQ_POLLIN)) zh_curve_handle (self->curve);
        for (size_t i = 0; i < links; i++)
            if (items[base + i].revents & ZMQ_POLLIN)
                zh_router_drain_link (self->router, zh_peers_link (self->peers, i), self->now);
    }
    free (items);
    self->me.phase = ZH_PHASE_DONE;
    if (code == 0) zh_info ("exit", "routed=%llu code=0", (unsigned long long)self->stats.routed);
    return code;
}

int
zh_broker_spawn_thread (zh_broker_t *self, const char *name, zh_thread_main_fn *fn, void *arg,
                        int64_t ready_timeout_ms, zh_error_t *err)
{
    self->now = zclock_mono ();
    return zh_procs_spawn_thread (zh_lifecycle_procs (self->lifecycle), name, fn, arg,
                                  ready_timeout_ms, self->now, err)
               ? 0
               : -1;
}

void
zh_broker_stop (zh_broker_t *self)
{
    self->stop_requested = 1;
}
