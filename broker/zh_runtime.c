/*  zh_runtime.c — the runtime directory, sockets, endpoints and CPU
    pinning of the broker (see zh_runtime.h).

    Where it sits: at the bottom of broker/: zh_broker_new makes it first,
    and zh_broker_destroy destroys it last.
*/
#include "zh_runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "zh_addr.h"
#include "zh_log.h"

#define S_SELF_MAX (2 * ZH_CONFIG_LIST_MAX)

struct _zh_runtime_t {
    const zh_config_t *config;            //  the broker's settings (borrowed)
    char *dir;                            //  the runtime directory
    int dir_fd;                           //  it, opened O_NOFOLLOW (RD-1)
    int pid_fd;                           //  broker.pid, flock'd while we run
    void *socks[ZH_SOCK_COUNT];           //  frontend, backend, control ROUTERs
    char *bound[ZH_CONFIG_LIST_MAX];      //  frontend endpoints as bound
    size_t bound_count;                   //  entries of bound
    char *advertised[ZH_CONFIG_LIST_MAX]; //  what other machines dial
    size_t advertised_count;              //  entries of advertised
    const char *self_eps[S_SELF_MAX];     //  "self": into advertised and bound
    size_t self_count;                    //  entries of self_eps
    char *backend_ipc;                    //  ipc://<dir>/backend
    char *backend_inproc;                 //  inproc://zhost-backend-<n>
    char *control_ipc;                    //  ipc://<dir>/control
    bool pinned;                          //  --cpu: loop and libzmq threads pinned
    cpu_set_t pin_cpus;                   //  --cpu, as far as the broker may use it
    cpu_set_t start_cpus;                 //  the CPUs the broker started with
};

static int s_inproc_counter = 0;
static const char *s_own_files[] = {"broker.pid", "backend", "control"};

//  ---------------------------------------------------------------------
//  The runtime directory (RD-1)

static bool
s_own_file (const char *name)
{
    for (size_t i = 0; i < sizeof s_own_files / sizeof s_own_files[0]; i++)
        if (strcmp (name, s_own_files[i]) == 0) return true;
    return false;
}

//  True if an existing directory holds an entry that is not zhost's (its
//  name into name); a directory that cannot be listed counts as foreign.
static bool
s_foreign_entry (int dir_fd, char *name, size_t size)
{
    int fd = dup (dir_fd);
    DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
    if (!d) {
        if (fd >= 0) close (fd);
        snprintf (name, size, "(cannot list it: %s)", strerror (errno));
        return true;
    }
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir (d)) != NULL)
        if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..") && !s_own_file (e->d_name)) {
            snprintf (name, size, "%.64s", e->d_name);
            found = true;
        }
    closedir (d);
    return found;
}

static int
s_open_dir (zh_runtime_t *self, zh_error_t *err)
{
    const char *dir = self->dir;
    bool created = mkdir (dir, 0700) == 0;
    if (!created && errno != EEXIST)
        return zh_error_exit (err, 1, "--runtime-dir %s: cannot create: %s", dir, strerror (errno));
    self->dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (self->dir_fd < 0) {
        struct stat lst;
        if (errno == ELOOP || (lstat (dir, &lst) == 0 && S_ISLNK (lst.st_mode)))
            return zh_error_exit (err, 1,
                                  "--runtime-dir %s: is a symlink; give the real directory "
                                  "(a runtime dir is never reached through a link)",
                                  dir);
        if (errno == ENOTDIR)
            return zh_error_exit (err, 1, "--runtime-dir %s: not a directory", dir);
        return zh_error_exit (err, 1, "--runtime-dir %s: cannot open: %s", dir, strerror (errno));
    }
    struct stat st;
    if (fstat (self->dir_fd, &st) != 0 || !S_ISDIR (st.st_mode))
        return zh_error_exit (err, 1, "--runtime-dir %s: not a directory", dir);
    if (st.st_uid != geteuid ())
        return zh_error_exit (err, 1,
                              "--runtime-dir %s: owned by uid %d, not by the broker's "
                              "user (uid %d)",
                              dir, (int)st.st_uid, (int)geteuid ());
    if (created && (st.st_mode & 0777) != 0700 && fchmod (self->dir_fd, 0700) != 0)
        return zh_error_exit (err, 1, "--runtime-dir %s: cannot set mode 0700: %s", dir,
                              strerror (errno));
    if (!created && (st.st_mode & 0777) != 0700)
        return zh_error_exit (err, 1,
                              "--runtime-dir %s: mode %04o, must be 0700 (only the broker's user "
                              "may reach its sockets); chmod 700 it or use another directory",
                              dir, (unsigned)(st.st_mode & 07777));
    char foreign[80];
    if (!created && s_foreign_entry (self->dir_fd, foreign, sizeof foreign))
        return zh_error_exit (err, 1,
                              "--runtime-dir %s: not a zhost runtime dir (it holds '%s'); give an "
                              "empty or new directory",
                              dir, foreign);
    return 0;
}

//  Take broker.pid's lock; a live broker holding it is an error, a dead
//  one's socket files are removed.
static int
s_take_lock (zh_runtime_t *self, zh_error_t *err)
{
    const char *dir = self->dir;
    self->pid_fd =
        openat (self->dir_fd, "broker.pid", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (self->pid_fd < 0) return zh_error_exit (err, 1, "%s/broker.pid: %s", dir, strerror (errno));
    if (flock (self->pid_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread (self->pid_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn (pid, "\n")] = 0;
        close (self->pid_fd);
        self->pid_fd = -1;
        return zh_error_exit (err, 1,
                              "another broker (pid %s) is running with runtime dir %s; stop it "
                              "or use another --runtime-dir",
                              pid[0] ? pid : "?", dir);
    }
    char line[32];
    int len = snprintf (line, sizeof line, "%d\n", (int)getpid ());
    if (ftruncate (self->pid_fd, 0) != 0 || pwrite (self->pid_fd, line, (size_t)len, 0) != len)
        return zh_error_exit (err, 1, "%s/broker.pid: cannot write: %s", dir, strerror (errno));
    //  We hold the lock, so a socket file left here is a dead broker's.
    for (size_t i = 1; i < sizeof s_own_files / sizeof s_own_files[0]; i++) {
        struct stat st;
        if (fstatat (self->dir_fd, s_own_files[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISSOCK (st.st_mode))
            unlinkat (self->dir_fd, s_own_files[i], 0);
    }
    return 0;
}

zh_runtime_t *
zh_runtime_new (const zh_config_t *config, zh_error_t *err)
{
    zh_runtime_t *self = (zh_runtime_t *)calloc (1, sizeof (zh_runtime_t));
    if (!self) {
        zh_error_exit (err, 1, "out of memory");
        return NULL;
    }
    self->config = config;
    self->dir_fd = -1;
    self->pid_fd = -1;
    self->dir = strdup (config->runtime_dir ? config->runtime_dir : "");
    if (!self->dir || !self->dir[0]) {
        zh_error_exit (err, 2, "--runtime-dir: no directory given");
        zh_runtime_destroy (&self);
        return NULL;
    }
    if (s_open_dir (self, err) != 0 || s_take_lock (self, err) != 0) zh_runtime_destroy (&self);
    return self;
}

void
zh_runtime_destroy (zh_runtime_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_runtime_t *self = *self_p;
    int linger = (int)self->config->linger_ms;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        if (self->socks[s]) {
            zmq_setsockopt (self->socks[s], ZMQ_LINGER, &linger, sizeof linger);
            zmq_close (self->socks[s]);
        }
    if (self->pid_fd >= 0) {
        //  Ours while we hold the lock: the sockets, then the pid file.
        unlinkat (self->dir_fd, "backend", 0);
        unlinkat (self->dir_fd, "control", 0);
        unlinkat (self->dir_fd, "broker.pid", 0);
        close (self->pid_fd);
    }
    if (self->dir_fd >= 0) close (self->dir_fd);
    for (size_t i = 0; i < self->bound_count; i++)
        free (self->bound[i]);
    for (size_t i = 0; i < self->advertised_count; i++)
        free (self->advertised[i]);
    free (self->backend_ipc);
    free (self->backend_inproc);
    free (self->control_ipc);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  CPU pinning

int
zh_runtime_pin_setup (zh_runtime_t *self, void *ctx, zh_error_t *err)
{
    cpu_set_t wanted;
    char have[256], asked[256], using[256];
    zh_error_t why;
    if (zh_cpu_list_parse (self->config->cpus, &wanted, &why) != 0)
        return zh_error_exit (err, 2, "--cpu: %s", why.reason);
    if (sched_getaffinity (0, sizeof self->start_cpus, &self->start_cpus) != 0)
        return zh_error_exit (err, 1, "--cpu: sched_getaffinity: %s", strerror (errno));
    CPU_AND (&self->pin_cpus, &wanted, &self->start_cpus);
    if (CPU_COUNT (&self->pin_cpus) == 0)
        return zh_error_exit (err, 2,
                              "--cpu: none of %s is available to the broker (it may use %s)",
                              zh_cpu_list_format (&wanted, asked, sizeof asked),
                              zh_cpu_list_format (&self->start_cpus, have, sizeof have));
    if (!CPU_EQUAL (&self->pin_cpus, &wanted))
        zh_warn ("cpu", "asked=%s available=%s using=%s",
                 zh_cpu_list_format (&wanted, asked, sizeof asked),
                 zh_cpu_list_format (&self->start_cpus, have, sizeof have),
                 zh_cpu_list_format (&self->pin_cpus, using, sizeof using));
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET (cpu, &self->pin_cpus) &&
            zmq_ctx_set (ctx, ZMQ_THREAD_AFFINITY_CPU_ADD, cpu) != 0)
            return zh_error_exit (err, 1, "--cpu: libzmq refused CPU %d: %s", cpu,
                                  zmq_strerror (errno));
    self->pinned = true;
    return 0;
}

void
zh_runtime_pin_loop (zh_runtime_t *self)
{
    if (!self->pinned) return;
    char cpus[256];
    zh_cpu_list_format (&self->pin_cpus, cpus, sizeof cpus);
    int rc = pthread_setaffinity_np (pthread_self (), sizeof self->pin_cpus, &self->pin_cpus);
    if (rc == 0)
        zh_info ("cpu", "pinned=%s", cpus);
    else //  e.g. a cgroup took the CPUs away since start: run unpinned
        zh_warn ("cpu", "pinned=none wanted=%s error=\"%s\"", cpus, strerror (rc));
}

const cpu_set_t *
zh_runtime_start_cpus (zh_runtime_t *self)
{
    return self->pinned ? &self->start_cpus : NULL;
}

//  ---------------------------------------------------------------------
//  Sockets and endpoints

static void *
s_router (zh_runtime_t *self, void *ctx, bool handover)
{
    void *socket = zmq_socket (ctx, ZMQ_ROUTER);
    if (!socket) return NULL;
    int one = 1, hwm = (int)self->config->hwm, zero = 0;
    //  libzmq drops a connection whose frame exceeds MAXMSGSIZE; keep that
    //  well above max_msg_bytes so oversize messages get TOO_LARGE / 413.
    int64_t max = self->config->max_msg_bytes * 2 + 65536;
    zmq_setsockopt (socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    if (handover) zmq_setsockopt (socket, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt (socket, ZMQ_LINGER, &zero, sizeof zero);
    return socket;
}

//  Advertise a bound endpoint: tcp://0.0.0.0:P (from tcp://*:P) becomes
//  tcp://<hostname>:P, and the log says so.
static char *
s_advertise_of (const char *bound)
{
    const char *wild[] = {"tcp://0.0.0.0:", "tcp://[::]:", "tcp://*:"};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        size_t n = strlen (wild[i]);
        if (strncmp (bound, wild[i], n) == 0) {
            char host[256] = "localhost";
            gethostname (host, sizeof host - 1);
            host[sizeof host - 1] = 0;
            char *out = NULL;
            if (asprintf (&out, "tcp://%s:%s", host, bound + n) < 0) return NULL;
            zh_info ("advertise",
                     "bound=%s advertise=%s note=\"a wildcard bind advertises the "
                     "host name; use --advertise to choose\"",
                     bound, out);
            return out;
        }
    }
    return strdup (bound);
}

static void
s_add_self (zh_runtime_t *self, const char *ep)
{
    for (size_t i = 0; i < self->self_count; i++)
        if (strcmp (self->self_eps[i], ep) == 0) return;
    if (self->self_count < S_SELF_MAX) self->self_eps[self->self_count++] = ep;
}

static int
s_bind_frontends (zh_runtime_t *self, zh_error_t *err)
{
    const zh_config_t *config = self->config;
    for (size_t i = 0; i < config->frontend_count; i++) {
        const char *ep = config->frontends[i];
        if (zmq_bind (self->socks[ZH_SOCK_FRONTEND], ep) != 0)
            return zh_error_exit (err, 1, "--frontend %s: cannot bind: %s%s", ep,
                                  zmq_strerror (errno),
                                  errno == EADDRINUSE ? " (is another broker running?)" : "");
        char last[1024];
        size_t last_len = sizeof last;
        zmq_getsockopt (self->socks[ZH_SOCK_FRONTEND], ZMQ_LAST_ENDPOINT, last, &last_len);
        if (!(self->bound[self->bound_count++] = strdup (last)))
            return zh_error_exit (err, 1, "out of memory");
    }
    return 0;
}

static int
s_bind_local (zh_runtime_t *self, zh_error_t *err)
{
    if (asprintf (&self->backend_ipc, "ipc://%s/backend", self->dir) < 0 ||
        asprintf (&self->control_ipc, "ipc://%s/control", self->dir) < 0 ||
        asprintf (&self->backend_inproc, "inproc://zhost-backend-%d",
                  __atomic_fetch_add (&s_inproc_counter, 1, __ATOMIC_SEQ_CST)) < 0)
        return zh_error_exit (err, 1, "out of memory");
    if (strlen (self->backend_ipc) - 6 >= 108)
        return zh_error_exit (err, 1,
                              "--runtime-dir %s: path too long for an ipc socket (max ~100 bytes)",
                              self->dir);
    const char *binds[][2] = {
        {self->backend_ipc, "b"}, {self->backend_inproc, "b"}, {self->control_ipc, "c"}};
    for (size_t i = 0; i < 3; i++) {
        void *socket = self->socks[binds[i][1][0] == 'b' ? ZH_SOCK_BACKEND : ZH_SOCK_CONTROL];
        if (zmq_bind (socket, binds[i][0]) != 0)
            return zh_error_exit (err, 1, "%s: cannot bind: %s", binds[i][0], zmq_strerror (errno));
    }
    return 0;
}

static int
s_advertise (zh_runtime_t *self, zh_error_t *err)
{
    const zh_config_t *config = self->config;
    if (config->advertise_count)
        for (size_t i = 0; i < config->advertise_count; i++)
            self->advertised[self->advertised_count++] = strdup (config->advertise[i]);
    else
        for (size_t i = 0; i < self->bound_count; i++)
            self->advertised[self->advertised_count++] = s_advertise_of (self->bound[i]);
    for (size_t i = 0; i < self->advertised_count; i++) {
        zh_error_t ep_err;
        if (!self->advertised[i]) return zh_error_exit (err, 1, "out of memory");
        if (zh_endpoint_check (self->advertised[i], strlen (self->advertised[i]), &ep_err) != 0)
            return zh_error_exit (err, 2, "--advertise %s: %s", self->advertised[i], ep_err.reason);
        s_add_self (self, self->advertised[i]);
    }
    for (size_t i = 0; i < self->bound_count; i++)
        if (strncmp (self->bound[i], "tcp://0.0.0.0:", 14) != 0 &&
            strncmp (self->bound[i], "tcp://[::]:", 11) != 0)
            s_add_self (self, self->bound[i]);
    return 0;
}

int
zh_runtime_bind (zh_runtime_t *self, void *ctx, zh_runtime_curve_fn *curve_server, void *curve_arg,
                 zh_error_t *err)
{
    if (self->config->frontend_count == 0)
        return zh_error_exit (err, 2, "--frontend: at least one endpoint is needed");
    //  BR-6: with CURVE the frontend does not hand a routing id over to a
    //  new connection (it would receive the old session's messages, under
    //  another key); ZMTP heartbeats close a dead connection's pipe within
    //  liveness heartbeats instead, so a reconnecting client gets its
    //  routing id back soon.
    bool curve = curve_server != NULL;
    self->socks[ZH_SOCK_FRONTEND] = s_router (self, ctx, !curve);
    if (curve && self->socks[ZH_SOCK_FRONTEND]) {
        int ivl = (int)self->config->heartbeat_ms;
        int timeout = (int)(self->config->heartbeat_ms * self->config->liveness);
        zmq_setsockopt (self->socks[ZH_SOCK_FRONTEND], ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt (self->socks[ZH_SOCK_FRONTEND], ZMQ_HEARTBEAT_TIMEOUT, &timeout,
                        sizeof timeout);
    }
    self->socks[ZH_SOCK_BACKEND] = s_router (self, ctx, false);
    self->socks[ZH_SOCK_CONTROL] = s_router (self, ctx, false);
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        if (!self->socks[s])
            return zh_error_exit (err, 1, "cannot create sockets: %s", zmq_strerror (errno));
    if (curve_server && curve_server (curve_arg, self->socks[ZH_SOCK_FRONTEND]) != 0)
        return zh_error_exit (err, 1, "--curve-secret: cannot make the frontend a CURVE server: %s",
                              zmq_strerror (errno));
    if (s_bind_frontends (self, err) || s_bind_local (self, err) || s_advertise (self, err))
        return -1;
    return 0;
}

void *const *
zh_runtime_sockets (zh_runtime_t *self)
{
    return self->socks;
}

size_t
zh_runtime_bound_count (zh_runtime_t *self)
{
    return self->bound_count;
}

const char *
zh_runtime_bound (zh_runtime_t *self, size_t i)
{
    return i < self->bound_count ? self->bound[i] : NULL;
}

size_t
zh_runtime_advertised_count (zh_runtime_t *self)
{
    return self->advertised_count;
}

const char *
zh_runtime_advertised (zh_runtime_t *self, size_t i)
{
    return i < self->advertised_count ? self->advertised[i] : NULL;
}

size_t
zh_runtime_self_count (zh_runtime_t *self)
{
    return self->self_count;
}

const char *
zh_runtime_self (zh_runtime_t *self, size_t i)
{
    return i < self->self_count ? self->self_eps[i] : NULL;
}

const char *
zh_runtime_backend_ipc (zh_runtime_t *self)
{
    return self->backend_ipc;
}

const char *
zh_runtime_backend_inproc (zh_runtime_t *self)
{
    return self->backend_inproc;
}

const char *
zh_runtime_control_ipc (zh_runtime_t *self)
{
    return self->control_ipc;
}
