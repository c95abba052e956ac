/*  zh_metrics.c — /metrics and /healthz on libmicrohttpd (see
    zh_metrics.h for MX-1..MX-3).

    Where it sits: beside the router; the loop calls zh_metrics_run when
    the daemon's epoll fd is readable or its timeout is due, and the
    access handler renders a scrape from the parts' tables. The series
    are documented in docs/broker.md, "Metrics"; every name starts with
    zhost_. A scrape walks every connection, proc and link once: with a
    thousand procs it is a few thousand lines, about 0.2 ms of the loop.
*/
#include "zh_metrics.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <dirent.h>
#include <microhttpd.h>
#include <msgpack.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "zh_log.h"

struct _zh_metrics_t {
    zh_metrics_parts_t parts;  //  what a scrape reads
    struct MHD_Daemon *daemon; //  the HTTP server (external epoll mode)
    char bound[80];            //  HOST:PORT it listens on
    int64_t started_mono;      //  ms, monotonic: when the broker started
    double started_real;       //  s since the epoch: when the broker started
    uint64_t scrapes;          //  /metrics answered
    uint64_t http_requests;    //  every request answered, any path
};

//  ---------------------------------------------------------------------
//  Rendering: Prometheus text format 0.0.4

//  A label value with \, " and newline escaped (the format's rule).
static void
s_label (FILE *out, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (*c == '\\' || *c == '"')
            fputc ('\\', out), fputc (*c, out);
        else if (*c == '\n')
            fputs ("\\n", out);
        else
            fputc (*c, out);
    }
}

static void
s_head (FILE *out, const char *name, const char *type, const char *help)
{
    fprintf (out, "# HELP zhost_%s %s\n# TYPE zhost_%s %s\n", name, help, name, type);
}

static void
s_one (FILE *out, const char *name, const char *type, const char *help, uint64_t value)
{
    s_head (out, name, type, help);
    fprintf (out, "zhost_%s %llu\n", name, (unsigned long long)value);
}

static const char *
s_kind_name (zh_conn_kind_t kind)
{
    return kind == ZH_CONN_CLIENT ? "client"
           : kind == ZH_CONN_PEER ? "peer"
           : kind == ZH_CONN_PROC ? "proc"
                                  : "handshake";
}

static void
s_render_messages (zh_metrics_t *self, FILE *out)
{
    const zh_stats_t *st = self->parts.stats;
    s_one (out, "messages_routed_total", "counter",
           "SEND and RETURN messages delivered to a connection or a peer link.", st->routed);
    s_head (out, "messages_returned_total", "counter",
            "RETURNs the broker made, by code (docs/protocol.md).");
    for (int rc = 0; rc < ZH_RC_COUNT; rc++)
        fprintf (out, "zhost_messages_returned_total{code=\"%s\"} %llu\n", zh_rc_name ((zh_rc_t)rc),
                 (unsigned long long)st->returned[rc]);
    s_one (out, "messages_abandoned_total", "counter",
           "RETURNs that could not be delivered to anyone.", st->abandoned);
    s_one (out, "messages_dropped_total", "counter",
           "Undeliverable SENDs that did not ask for a RETURN.", st->dropped);
    s_head (out, "rejected_total", "counter", "Frames refused with ERROR, by code.");
    for (int i = 0; i < ZH_REJECT_KINDS; i++)
        fprintf (out, "zhost_rejected_total{code=\"%d\"} %llu\n", zh_stats_reject_codes[i],
                 (unsigned long long)st->rejected[i]);
    fprintf (out, "zhost_rejected_total{code=\"other\"} %llu\n",
             (unsigned long long)st->rejected_other);
    s_one (out, "agent_requests_total", "counter", "Requests the host agent served.",
           st->agent_requests);
    s_one (out, "agent_refused_total", "counter", "Host agent requests refused (ERROR 403).",
           st->agent_refused);
}

static void
s_render_connections (zh_metrics_t *self, FILE *out)
{
    zh_routes_t *routes = self->parts.routes;
    uint64_t kinds[4] = {0}; //  handshake, client, peer, proc (zh_conn_kind_t)
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *c = zh_routes_first (routes, (zh_sock_t)s); c;
             c = zh_routes_next (routes, (zh_sock_t)s))
            kinds[(unsigned)c->kind < 4 ? c->kind : 0]++;
    s_head (out, "connections", "gauge",
            "Connections by kind: client (ATTACH), proc (spawned), peer (another broker's "
            "HELLO), link (our own links to other brokers), handshake (not attached yet).");
    for (int k = 1; k < 4; k++)
        fprintf (out, "zhost_connections{kind=\"%s\"} %llu\n", s_kind_name ((zh_conn_kind_t)k),
                 (unsigned long long)kinds[k]);
    fprintf (out, "zhost_connections{kind=\"link\"} %zu\n", zh_peers_count (self->parts.peers));
    fprintf (out, "zhost_connections{kind=\"handshake\"} %llu\n", (unsigned long long)kinds[0]);

    //  Per proc: every connection with a proc id (spawned procs and
    //  attached clients).
    static const char *dirs[2] = {"in", "out"};
    for (int d = 0; d < 2; d++) {
        char name[48];
        snprintf (name, sizeof name, "proc_messages_%s_total", dirs[d]);
        s_head (out, name, "counter",
                d == 0 ? "SEND and RETURN messages received from a proc or client."
                       : "SEND and RETURN messages routed to a proc or client (RETURNs "
                         "the broker makes are in zhost_messages_returned_total).");
        for (int s = 0; s < ZH_SOCK_COUNT; s++)
            for (zh_conn_t *c = zh_routes_first (routes, (zh_sock_t)s); c;
                 c = zh_routes_next (routes, (zh_sock_t)s)) {
                if (!c->proc_id_len) continue;
                fprintf (out, "zhost_%s{proc=\"", name);
                s_label (out, c->proc_id);
                fprintf (out, "\",kind=\"%s\"} %llu\n",
                         c->kind == ZH_CONN_PROC ? "spawned" : "client",
                         (unsigned long long)(d == 0 ? c->msgs_in : c->msgs_out));
            }
    }
}

static void
s_render_procs (zh_metrics_t *self, FILE *out)
{
    uint64_t by[ZH_PS_FAILED + 1] = {0};
    for (zh_proc_t *p = zh_procs_first (self->parts.procs); p;
         p = zh_procs_next (self->parts.procs))
        if ((unsigned)p->state <= ZH_PS_FAILED) by[p->state]++;
    s_head (out, "procs", "gauge",
            "Spawned procs by status (ended ones while the broker still lists them).");
    for (int s = 0; s <= ZH_PS_FAILED; s++)
        fprintf (out, "zhost_procs{status=\"%s\"} %llu\n", zh_pstate_name ((zh_pstate_t)s),
                 (unsigned long long)by[s]);
}

//  One link as a scrape shows it: what zh_peers says, plus what came in
//  from that broker over its own link to us (a link carries one way).
typedef struct {
    zh_peer_info_t info; //  the link, from zh_peers_info
    uint64_t received;   //  info.received plus its HELLO'd connections' messages in
} s_link_t;

//  Every link, taken once per scrape (NULL with *n 0 when there are none
//  or memory ran out).
static s_link_t *
s_links (zh_metrics_t *self, size_t *n)
{
    *n = zh_peers_count (self->parts.peers);
    s_link_t *links = *n ? (s_link_t *)calloc (*n, sizeof *links) : NULL;
    if (!links) {
        *n = 0;
        return NULL;
    }
    for (size_t i = 0; i < *n; i++) {
        zh_peers_info (self->parts.peers, i, &links[i].info);
        links[i].received = links[i].info.received;
    }
    return links;
}

//  The link whose endpoint a peer connection said in HELLO, or NULL.
static s_link_t *
s_link_of (s_link_t *links, size_t n, const zh_conn_t *conn)
{
    for (size_t i = 0; i < n; i++)
        if (strlen (links[i].info.endpoint) == conn->peer_endpoint_len &&
            memcmp (links[i].info.endpoint, conn->peer_endpoint, conn->peer_endpoint_len) == 0)
            return &links[i];
    return NULL;
}

static void
s_render_peers (zh_metrics_t *self, FILE *out)
{
    size_t n;
    s_link_t *links = s_links (self, &n);
    zh_routes_t *routes = self->parts.routes;
    for (zh_conn_t *c = zh_routes_first (routes, ZH_SOCK_FRONTEND); c;
         c = zh_routes_next (routes, ZH_SOCK_FRONTEND)) {
        s_link_t *link =
            c->kind == ZH_CONN_PEER && c->peer_endpoint ? s_link_of (links, n, c) : NULL;
        if (link) link->received += c->msgs_in;
    }
    s_head (out, "peer_state", "gauge",
            "A link's state: 1 for the state it is in (closed, hello, up).");
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < ZH_PEER_STATES; k++) {
            fputs ("zhost_peer_state{endpoint=\"", out);
            s_label (out, links[i].info.endpoint);
            fprintf (out, "\",state=\"%s\"} %d\n", zh_peer_state_names[k],
                     strcmp (links[i].info.state, zh_peer_state_names[k]) == 0);
        }
    static const struct {
        const char *name, *type, *help;
    } series[] = {
        {"peer_pending_messages", "gauge", "Messages waiting for a link to come up."},
        {"peer_pending_bytes", "gauge", "Bytes waiting for a link to come up."},
        {"peer_forwarded_total", "counter", "Messages sent on a link."},
        {"peer_received_total", "counter", "Messages that came in from a peer broker."},
        {"peer_returned_total", "counter",
         "Messages for a peer refused or returned (OVERLOADED, HOST_UNREACHABLE, ...)."},
        {"peer_reconnects_total", "counter",
         "Times a link went back to HELLO or was dialled again."},
    };
    enum { RECEIVED = 3 }; //  series[RECEIVED] also counts peers without a link of ours
    for (size_t s = 0; s < sizeof series / sizeof series[0]; s++) {
        s_head (out, series[s].name, series[s].type, series[s].help);
        for (size_t i = 0; i < n; i++) {
            const s_link_t *l = &links[i];
            uint64_t v = s == 0   ? l->info.pending
                         : s == 1 ? l->info.pending_bytes
                         : s == 2 ? l->info.forwarded
                         : s == 3 ? l->received
                         : s == 4 ? l->info.returned
                                  : l->info.reconnects;
            fprintf (out, "zhost_%s{endpoint=\"", series[s].name);
            s_label (out, l->info.endpoint);
            fprintf (out, "\"} %llu\n", (unsigned long long)v);
        }
        if (s != RECEIVED) continue;
        //  A peer that sends to us but we never sent to has no link of
        //  ours: what came in from it still counts.
        for (zh_conn_t *c = zh_routes_first (routes, ZH_SOCK_FRONTEND); c;
             c = zh_routes_next (routes, ZH_SOCK_FRONTEND)) {
            if (c->kind != ZH_CONN_PEER || !c->peer_endpoint || s_link_of (links, n, c)) continue;
            fputs ("zhost_peer_received_total{endpoint=\"", out);
            s_label (out, c->peer_endpoint);
            fprintf (out, "\"} %llu\n", (unsigned long long)c->msgs_in);
        }
    }
    free (links);
}

static void
s_render_queues (zh_metrics_t *self, FILE *out)
{
    size_t now = 0, peak = 0, pending = 0, n;
    zh_send_outbox_depth (self->parts.send, &now, &peak);
    s_link_t *links = s_links (self, &n);
    for (size_t i = 0; i < n; i++)
        pending += links[i].info.pending;
    free (links);
    s_head (out, "queue_depth", "gauge",
            "Messages the broker holds: outbox (posted by the agent, timeouts and returns, "
            "routed each loop turn) and peer_pending (waiting for links to come up).");
    fprintf (out, "zhost_queue_depth{queue=\"outbox\"} %zu\n", now);
    fprintf (out, "zhost_queue_depth{queue=\"peer_pending\"} %zu\n", pending);
    s_one (out, "outbox_peak", "gauge", "The most messages the outbox held at once.", peak);
    s_one (out, "watchers", "gauge", "Active watch and logs --follow requests.",
           zh_watch_count (self->parts.watch));
}

//  Resident set from /proc/self/statm (pages), 0 if it cannot be read.
static uint64_t
s_rss_bytes (void)
{
    FILE *f = fopen ("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (!f) return 0;
    int got = fscanf (f, "%llu %llu", &size, &resident);
    fclose (f);
    return got == 2 ? resident * (uint64_t)sysconf (_SC_PAGESIZE) : 0;
}

static uint64_t
s_open_fds (void)
{
    DIR *d = opendir ("/proc/self/fd");
    if (!d) return 0;
    uint64_t n = 0;
    for (struct dirent *e; (e = readdir (d));)
        if (e->d_name[0] != '.') n++;
    closedir (d);
    return n > 0 ? n - 1 : 0; //  not the one opendir holds
}

static void
s_render_process (zh_metrics_t *self, FILE *out)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                 ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    s_one (out, "process_resident_memory_bytes", "gauge", "The broker's resident memory.",
           s_rss_bytes ());
    s_head (out, "process_cpu_seconds_total", "counter", "CPU time the broker used.");
    fprintf (out, "zhost_process_cpu_seconds_total %.3f\n", cpu);
    s_one (out, "process_open_fds", "gauge", "File descriptors the broker holds.", s_open_fds ());
    s_head (out, "uptime_seconds", "gauge", "Seconds since the broker started.");
    fprintf (out, "zhost_uptime_seconds %.3f\n",
             (double)(zclock_mono () - self->started_mono) / 1000.0);
    s_head (out, "start_time_seconds", "gauge",
            "When the broker started, seconds since the epoch.");
    fprintf (out, "zhost_start_time_seconds %.3f\n", self->started_real);
    int zmaj, zmin, zpat;
    zmq_version (&zmaj, &zmin, &zpat);
    s_head (out, "build_info", "gauge", "Versions of the broker and its libraries; always 1.");
    fprintf (out,
             "zhost_build_info{version=\"%s\",protocol=\"ZHP/1\",libzmq=\"%d.%d.%d\","
             "czmq=\"%d.%d.%d\",msgpack=\"%s\",libmicrohttpd=\"%s\"} 1\n",
             ZH_VERSION_STRING, zmaj, zmin, zpat, CZMQ_VERSION_MAJOR, CZMQ_VERSION_MINOR,
             CZMQ_VERSION_PATCH, msgpack_version (), MHD_get_version ());
    s_head (out, "broker_info", "gauge",
            "This broker's advertised endpoint, incarnation and phase; always 1.");
    fputs ("zhost_broker_info{host=\"", out);
    s_label (out, self->parts.me->host);
    fprintf (out, "\",incarnation=\"%llu\",phase=\"%s\"} 1\n",
             (unsigned long long)self->parts.me->incarnation,
             zh_phase_name (self->parts.me->phase));
    s_one (out, "metrics_scrapes_total", "counter", "Scrapes of /metrics answered.", self->scrapes);
}

char *
zh_metrics_render (zh_metrics_t *self, size_t *len)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    if (!out) return NULL;
    s_render_messages (self, out);
    s_render_connections (self, out);
    s_render_procs (self, out);
    s_render_peers (self, out);
    s_render_queues (self, out);
    s_render_process (self, out);
    if (fclose (out) != 0) {
        free (text);
        return NULL;
    }
    *len = size;
    return text;
}

//  ---------------------------------------------------------------------
//  HTTP

static enum MHD_Result
s_reply (struct MHD_Connection *connection, unsigned int status, const char *type, char *body,
         size_t len, bool owned)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!response) {
        if (owned) free (body);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return rc;
}

#define TEXT "text/plain; charset=utf-8"

static enum MHD_Result
s_answer (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **state)
{
    (void)version, (void)upload_data, (void)upload_data_size, (void)state;
    zh_metrics_t *self = (zh_metrics_t *)cls;
    self->http_requests++;
    if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 && strcmp (method, MHD_HTTP_METHOD_HEAD) != 0)
        return s_reply (connection, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT,
                        (char *)"only GET and HEAD\n", 18, false);
    if (strcmp (url, "/metrics") == 0) {
        size_t len = 0;
        char *text = zh_metrics_render (self, &len);
        if (!text)
            return s_reply (connection, MHD_HTTP_INTERNAL_SERVER_ERROR, TEXT,
                            (char *)"out of memory\n", 14, false);
        self->scrapes++;
        return s_reply (connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text,
                        len, true);
    }
    if (strcmp (url, "/healthz") == 0) {
        zh_phase_t phase = self->parts.me->phase;
        if (phase == ZH_PHASE_SERVING)
            return s_reply (connection, MHD_HTTP_OK, TEXT, (char *)"serving\n", 8, false);
        char *body = NULL;
        if (asprintf (&body, "shutting down (%s)\n", zh_phase_name (phase)) < 0) return MHD_NO;
        return s_reply (connection, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT, body, strlen (body), true);
    }
    if (strcmp (url, "/") == 0)
        return s_reply (connection, MHD_HTTP_OK, TEXT,
                        (char *)"zhost-broker: /metrics (Prometheus text), /healthz\n", 51, false);
    return s_reply (connection, MHD_HTTP_NOT_FOUND, TEXT,
                    (char *)"not found: try /metrics or /healthz\n", 36, false);
}

//  libmicrohttpd's own complaints (a client that broke the protocol, a
//  failed accept) go to our log, one line each.
static void
s_mhd_log (void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[256];
    vsnprintf (line, sizeof line, fmt, ap);
    size_t len = strlen (line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = 0;
    char q[300];
    zh_warn ("metrics", "error=%s", zh_log_quote (q, sizeof q, line, len));
}

zh_metrics_t *
zh_metrics_new (const char *addr, const zh_metrics_parts_t *parts, zh_error_t *err)
{
    char host[ZH_HOST_MAX + 1], port[8];
    zh_error_t why;
    if (zh_hostport_split (addr, host, sizeof host, port, sizeof port, &why) != 0) {
        zh_error_exit (err, 2, "--metrics %s (e.g. 9100 or 0.0.0.0:9100)", why.reason);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int gai = getaddrinfo (host, port, &hints, &found);
    if (gai != 0 || !found) {
        zh_error_exit (err, 2, "--metrics %.80s: cannot resolve %s: %s", addr, host,
                       gai_strerror (gai));
        return NULL;
    }
    zh_metrics_t *self = (zh_metrics_t *)calloc (1, sizeof (zh_metrics_t));
    if (!self) {
        freeaddrinfo (found);
        zh_error_exit (err, 1, "out of memory");
        return NULL;
    }
    self->parts = *parts;
    self->started_mono = zclock_mono ();
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    self->started_real = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (found->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    //  The logger first: libmicrohttpd prints to stderr until it is set.
    self->daemon = MHD_start_daemon (
        flags, 0, NULL, NULL, s_answer, self, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, found->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)ZH_METRICS_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)ZH_METRICS_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)ZH_METRICS_TIMEOUT_S, MHD_OPTION_END);
    int family = found->ai_family;
    freeaddrinfo (found);
    if (!self->daemon) {
        //  libmicrohttpd logged why (e.g. the port is taken) through s_mhd_log.
        zh_error_exit (err, 1, "--metrics %.80s: cannot listen on %s port %s (see the log)", addr,
                       host, port);
        zh_metrics_destroy (&self);
        return NULL;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port_bound = info ? info->port : (unsigned)atoi (port);
    snprintf (self->bound, sizeof self->bound, family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
              port_bound);
    return self;
}

void
zh_metrics_destroy (zh_metrics_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_metrics_t *self = *self_p;
    if (self->daemon) MHD_stop_daemon (self->daemon);
    free (self);
    *self_p = NULL;
}

int
zh_metrics_fd (zh_metrics_t *self)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info ? info->epoll_fd : -1;
}

int64_t
zh_metrics_timeout (zh_metrics_t *self)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout (self->daemon, &ms) != MHD_YES) return -1;
    return ms > INT64_MAX ? INT64_MAX : (int64_t)ms;
}

void
zh_metrics_run (zh_metrics_t *self)
{
    MHD_run (self->daemon);
}

const char *
zh_metrics_bound (zh_metrics_t *self)
{
    return self->bound;
}
