/*  zh_procs.c — the process manager: spawn, readiness, exit monitor,
    stop/kill escalation and bulk stop (the contract is zh_procs.h).

    Where it sits: inside the broker's loop. The broker calls in when a
    host agent op or a READY arrives (spawn, ready, stop, kill, stop_all),
    on SIGCHLD (reap), when a pipe is readable (read_fd) and on each loop
    turn (tick); this file calls back on every state change, to have a
    STOP sent, and when a bulk stop is over. Nothing here blocks the loop,
    except the exec-status read in spawn (it returns at exec or failure)
    and zh_procs_destroy.

    Invariants (the header's PM-1..PM-5, and those of this file):
    PM-1 (one gate): a state changes only in s_set_state, which refuses
         and logs any transition outside the lifecycle; a terminal state
         never changes again (a later reap or thread end only records
         that the child is gone).
    PM-2 (names): a live name is unique; spawning a terminal one retires
         the old entry (no longer found or listed) in favour of the new.
    PM-3 (threads): a thread proc is never signalled; its escalation ends
         at STOP and the manager keeps waiting for its return.
    PM-4 (escalation): STOP → timeout → SIGTERM to the group → timeout →
         SIGKILL to the group; stopping a stopping proc changes nothing.
    PM-5 (bulk stop): at most max_in_flight of a job's procs are in their
         escalation at once; the job ends when all of its procs are
         terminal, with one on_stop_all_done.
    PM-6 (no early free): an entry is freed only when it is retired, its
         child reaped or its thread joined, no bulk stop refers to it, and
         no call into the manager is in progress (callbacks may re-enter).
    PM-7 (signal only the living): a process group is signalled only
         while its leader is unreaped, so its pid (= pgid) cannot have
         been reused.
    PM-8 (the group ends with its leader; zh_procs.h): an exit is seen
         with waitid(WNOWAIT), the group gets SIGKILL, then the leader is
         reaped.
*/
#include "zh_procs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zh_log.h"

#define S_READ_BUDGET  (64 * 1024)   //  bytes per read_fd call: keeps the loop fair
#define S_DRAIN_BUDGET (1024 * 1024) //  bytes read from a pipe at a terminal state
#define S_REASON_MAX   128
#define S_TIMEOUT_MAX  (365LL * 24 * 3600 * 1000) //  a year: deadlines never overflow

//  ---------------------------------------------------------------------
//  Types

struct _s_entry_t;

//  What an epoll event names: one stream of an entry, or its thread's end.
typedef struct {
    struct _s_entry_t *entry; //  whose
    int what;                 //  0 stdout, 1 stderr, 2 the thread returned
} s_watch_t;

//  A proc and what only this file sees of it. proc comes first, so a
//  zh_proc_t * handed out is an s_entry_t *.
typedef struct _s_entry_t {
    zh_proc_t proc;                     //  what the rest of the broker sees
    bool retired;                       //  replaced by a new spawn of its name, or forgotten
    size_t job_refs;                    //  bulk stops that hold it (PM-6)
    int out_fd, err_fd;                 //  PROCESS: read ends of stdout and stderr (-1: closed)
    int epoll_fd;                       //  the manager's epoll set they are in
    const zh_procs_events_t *events;    //  the manager's (on_output for each line)
    char line[2][ZH_LINE_MAX];          //  the partial line of each stream
    size_t line_len[2];                 //  bytes of line[]
    char *tail[ZH_TAIL_LINES];          //  ring of the last output lines
    uint8_t tail_stream[ZH_TAIL_LINES]; //  each one's stream: 0 stdout, 1 stderr
    size_t tail_head, tail_count;       //  oldest slot and lines in tail
    zh_launch_thread_t *thread;         //  THREAD: until joined
    s_watch_t watch[3];                 //  the epoll events' data (s_watch)
} s_entry_t;

typedef enum { S_PENDING = 0, S_IN_FLIGHT, S_DONE } s_member_state_t;

typedef struct {
    s_entry_t *entry;
    s_member_state_t state;
} s_member_t;

//  A bulk stop (PM-5).
typedef struct _s_job_t {
    void *tag;
    int64_t timeout_ms;
    size_t max_in_flight;
    char reason[S_REASON_MAX];
    s_member_t *members;
    size_t count;
    size_t done, stopped, failed;
    struct _s_job_t *next;
} s_job_t;

//  How a proc ended: what s_set_state writes on a terminal state.
typedef struct {
    int exit_code;      //  STOPPED
    int signal;         //  KILLED
    bool core_dumped;   //  KILLED
    const char *word;   //  FAILED: READY_TIMEOUT, EXIT_UNKNOWN
    const char *reason; //  FAILED: the sentence
} s_outcome_t;

struct _zh_procs_t {
    void *zmq_ctx;            //  the broker's context, for thread procs
    char *backend_ipc;        //  ZHOST_BACKEND of processes
    char *backend_inproc;     //  the backend of threads
    char *host;               //  ZHOST_HOST, and the endpoint of proc addresses
    int64_t heartbeat_ms;     //  ZHOST_HEARTBEAT_MS
    int64_t batch_max_bytes;  //  ZHOST_BATCH_MAX_BYTES
    zh_procs_events_t events; //  upward: state changes, STOP to send, bulk stop done
    s_entry_t **entries;      //  in spawn order, retired ones included
    size_t count, capacity;   //  entries used and allocated
    size_t cursor;            //  zh_procs_first/next
    s_job_t *jobs;            //  bulk stops running
    int depth;                //  calls in progress (callbacks re-enter)
    bool jobs_dirty;          //  a proc became terminal since the last pump
    int64_t now;              //  latest clock a caller gave
    bool child_cpus_set;      //  children get child_cpus (the broker is pinned)
    cpu_set_t child_cpus;     //  the broker's start-up CPUs
    int epoll_fd;             //  every pipe and thread end (zh_procs_poll_fd)
    size_t terminal_keep;     //  terminal entries kept for list/status (PM-9)
};

static const char *s_stream_names[2] = {"stdout", "stderr"};

//  ---------------------------------------------------------------------
//  States

const char *
zh_pstate_name (zh_pstate_t state)
{
    switch (state) {
    case ZH_PS_STARTING:
        return "starting";
    case ZH_PS_READY:
        return "ready";
    case ZH_PS_STOPPING:
        return "stopping";
    case ZH_PS_STOPPED:
        return "stopped";
    case ZH_PS_KILLED:
        return "killed";
    case ZH_PS_FAILED:
        return "failed";
    }
    return "unknown";
}

//  The lifecycle (PM-1): starting → ready | stopping | terminal;
//  ready → stopping | terminal; stopping → terminal.
static bool
s_transition_allowed (zh_pstate_t from, zh_pstate_t to)
{
    switch (from) {
    case ZH_PS_STARTING:
        return to == ZH_PS_READY || to == ZH_PS_STOPPING || zh_pstate_terminal (to);
    case ZH_PS_READY:
        return to == ZH_PS_STOPPING || zh_pstate_terminal (to);
    case ZH_PS_STOPPING:
        return zh_pstate_terminal (to);
    default:
        return false;
    }
}

static void s_drain_pipes (s_entry_t *entry);

//  The outcome part of the state log line: exit_code, signal or reason.
static void
s_outcome_fields (const zh_proc_t *proc, char *buf, size_t size)
{
    char quoted[2 * S_REASON_MAX];
    buf[0] = 0;
    if (proc->state == ZH_PS_STOPPED)
        snprintf (buf, size, " exit_code=%d", proc->exit_code);
    else if (proc->state == ZH_PS_KILLED)
        snprintf (buf, size, " signal=%d core=%s", proc->signal,
                  proc->core_dumped ? "true" : "false");
    else if (proc->state == ZH_PS_FAILED)
        snprintf (buf, size, " reason=%s detail=%s", proc->reason_word,
                  zh_log_quote (quoted, sizeof quoted, proc->reason, strlen (proc->reason)));
}

static void
s_record_outcome (zh_proc_t *proc, zh_pstate_t state, const s_outcome_t *outcome)
{
    if (!outcome) return;
    if (state == ZH_PS_STOPPED)
        proc->exit_code = outcome->exit_code;
    else if (state == ZH_PS_KILLED) {
        proc->signal = outcome->signal;
        proc->core_dumped = outcome->core_dumped;
    } else if (state == ZH_PS_FAILED) {
        snprintf (proc->reason_word, sizeof proc->reason_word, "%s",
                  outcome->word ? outcome->word : "FAILED");
        snprintf (proc->reason, sizeof proc->reason, "%s", outcome->reason ? outcome->reason : "");
    }
}

//  The one place a state changes (PM-1). 0, or -1 if refused. On a
//  terminal state the pipes are drained first, so the tail is complete
//  when on_state runs.
static int
s_set_state (zh_procs_t *self, s_entry_t *entry, zh_pstate_t state, const s_outcome_t *outcome)
{
    zh_proc_t *proc = &entry->proc;
    zh_pstate_t old = proc->state;
    if (!s_transition_allowed (old, state)) {
        zh_warn ("transition-refused", "proc=%s from=%s to=%s", proc->name, zh_pstate_name (old),
                 zh_pstate_name (state));
        return -1;
    }
    s_record_outcome (proc, state, outcome);
    if (old == ZH_PS_STARTING) proc->ready_deadline = 0;
    if (zh_pstate_terminal (state)) {
        proc->stop_deadline = 0;
        s_drain_pipes (entry);
        self->jobs_dirty = true;
    }
    proc->state = state;
    char fields[2 * S_REASON_MAX + 32];
    s_outcome_fields (proc, fields, sizeof fields);
    zh_info ("proc", "name=%s from=%s to=%s pid=%d%s", proc->name, zh_pstate_name (old),
             zh_pstate_name (state), (int)proc->pid, fields);
    if (self->events.on_state) self->events.on_state (self->events.arg, proc, old);
    return 0;
}

//  ---------------------------------------------------------------------
//  Output: lines from the pipes, logged and kept in the tail ring

static void
s_tail_push (s_entry_t *entry, int stream, const char *line, size_t len)
{
    char *copy = strndup (line, len);
    if (!copy) return; //  out of memory: the line is logged, not kept
    size_t slot;
    if (entry->tail_count == ZH_TAIL_LINES) {
        slot = entry->tail_head;
        free (entry->tail[slot]);
        entry->tail_head = (entry->tail_head + 1) % ZH_TAIL_LINES;
    } else
        slot = (entry->tail_head + entry->tail_count++) % ZH_TAIL_LINES;
    entry->tail[slot] = copy;
    entry->tail_stream[slot] = (uint8_t)stream;
}

//  One line of a stream: to the log with the proc name, and to the tail.
static void
s_emit_line (s_entry_t *entry, int stream)
{
    size_t len = entry->line_len[stream];
    const char *line = entry->line[stream];
    if (len > 0 && line[len - 1] == '\r') len--;
    char quoted[4 * ZH_LINE_MAX + 8];
    zh_info ("output", "proc=%s stream=%s line=%s", entry->proc.name, s_stream_names[stream],
             zh_log_quote (quoted, sizeof quoted, line, len));
    s_tail_push (entry, stream, line, len);
    if (entry->events && entry->events->on_output)
        entry->events->on_output (entry->events->arg, &entry->proc, s_stream_names[stream], line,
                                  len);
    entry->line_len[stream] = 0;
}

//  Split bytes into lines; a line longer than ZH_LINE_MAX is cut there
//  and its rest continues as the next line (nothing is lost).
static void
s_take_output (s_entry_t *entry, int stream, const char *bytes, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (bytes[i] == '\n') {
            s_emit_line (entry, stream);
            continue;
        }
        if (entry->line_len[stream] == ZH_LINE_MAX) s_emit_line (entry, stream);
        entry->line[stream][entry->line_len[stream]++] = bytes[i];
    }
}

static int *
s_stream_fd (s_entry_t *entry, int stream)
{
    return stream == 0 ? &entry->out_fd : &entry->err_fd;
}

//  EOF (or a read error): the last partial line is flushed, the fd
//  closed (which also takes it out of the epoll set).
static void
s_close_stream (s_entry_t *entry, int stream)
{
    int *fd = s_stream_fd (entry, stream);
    if (entry->line_len[stream] > 0) s_emit_line (entry, stream);
    //  Out of the set before the close: a fork in progress may hold a copy
    //  of the fd until its exec, which would keep the registration alive.
    if (*fd >= 0) epoll_ctl (entry->epoll_fd, EPOLL_CTL_DEL, *fd, NULL);
    if (*fd >= 0) close (*fd);
    *fd = -1;
}

//  Read what a non-blocking pipe holds, up to budget bytes.
static void
s_read_stream (s_entry_t *entry, int stream, size_t budget)
{
    int fd = *s_stream_fd (entry, stream);
    char buf[4096];
    size_t total = 0;
    while (fd >= 0 && total < budget) {
        ssize_t n = read (fd, buf, sizeof buf);
        if (n > 0) {
            s_take_output (entry, stream, buf, (size_t)n);
            total += (size_t)n;
        } else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        else {
            s_close_stream (entry, stream);
            return;
        }
    }
}

//  At a terminal state: take what the pipes still hold, then close them
//  (a grandchild that kept them open no longer feeds this proc's tail).
static void
s_drain_pipes (s_entry_t *entry)
{
    for (int stream = 0; stream < 2; stream++) {
        s_read_stream (entry, stream, S_DRAIN_BUDGET);
        if (*s_stream_fd (entry, stream) >= 0) s_close_stream (entry, stream);
    }
}

size_t
zh_proc_tail_count (const zh_proc_t *proc)
{
    return proc ? ((const s_entry_t *)proc)->tail_count : 0;
}

const char *
zh_proc_tail_stream (const zh_proc_t *proc, size_t i)
{
    const s_entry_t *entry = (const s_entry_t *)proc;
    if (!proc || i >= entry->tail_count) return NULL;
    return s_stream_names[entry->tail_stream[(entry->tail_head + i) % ZH_TAIL_LINES]];
}

const char *
zh_proc_tail_line (const zh_proc_t *proc, size_t i)
{
    const s_entry_t *entry = (const s_entry_t *)proc;
    if (!proc || i >= entry->tail_count) return NULL;
    return entry->tail[(entry->tail_head + i) % ZH_TAIL_LINES];
}

size_t
zh_proc_tail (const zh_proc_t *proc, char *buf, size_t size)
{
    if (!buf || size == 0) return 0;
    buf[0] = 0;
    size_t count = zh_proc_tail_count (proc);
    if (count == 0) return 0;
    //  The newest lines that fit, oldest of them first.
    size_t first = count, need = 0;
    while (first > 0) {
        const char *line = zh_proc_tail_line (proc, first - 1);
        size_t add = strlen (line) + (first < count ? 1 : 0);
        if (need + add + 1 > size) break;
        need += add;
        first--;
    }
    if (first == count) {
        //  Not even the newest line fits: its end.
        const char *line = zh_proc_tail_line (proc, count - 1);
        size_t len = strlen (line);
        memcpy (buf, line + len - (size - 1), size - 1);
        buf[size - 1] = 0;
        return size - 1;
    }
    size_t len = 0;
    for (size_t i = first; i < count; i++) {
        const char *line = zh_proc_tail_line (proc, i);
        if (i > first) buf[len++] = '\n';
        size_t n = strlen (line);
        memcpy (buf + len, line, n);
        len += n;
    }
    buf[len] = 0;
    return len;
}

//  ---------------------------------------------------------------------
//  Entries

static s_entry_t *
s_entry_new (zh_procs_t *self, const char *name, zh_launch_t launch)
{
    s_entry_t *entry = (s_entry_t *)calloc (1, sizeof (s_entry_t));
    if (!entry) return NULL;
    zh_proc_t *proc = &entry->proc;
    snprintf (proc->name, sizeof proc->name, "%s", name);
    zh_proc_addr_format (proc->proc_addr, sizeof proc->proc_addr, name, self->host);
    proc->launch = launch;
    entry->out_fd = -1;
    entry->err_fd = -1;
    entry->epoll_fd = self->epoll_fd;
    entry->events = &self->events;
    return entry;
}

static void
s_entry_destroy (s_entry_t **entry_p)
{
    s_entry_t *entry = *entry_p;
    if (!entry) return;
    for (size_t i = 0; i < entry->tail_count; i++)
        free (entry->tail[(entry->tail_head + i) % ZH_TAIL_LINES]);
    for (int stream = 0; stream < 2; stream++)
        if (*s_stream_fd (entry, stream) >= 0) {
            epoll_ctl (entry->epoll_fd, EPOLL_CTL_DEL, *s_stream_fd (entry, stream), NULL);
            close (*s_stream_fd (entry, stream));
        }
    if (entry->thread) {
        epoll_ctl (entry->epoll_fd, EPOLL_CTL_DEL, zh_launch_thread_fd (entry->thread), NULL);
        zh_launch_thread_abandon (&entry->thread, entry->proc.name);
    }
    free (entry);
    *entry_p = NULL;
}

//  Watch fd in the epoll set: what is 0/1 (a stream) or 2 (thread end).
static int
s_watch (zh_procs_t *self, s_entry_t *entry, int fd, int what)
{
    entry->watch[what] = (s_watch_t){entry, what};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &entry->watch[what]};
    return epoll_ctl (self->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

//  The child is gone: reaped (process) or joined (thread).
static bool
s_released (const s_entry_t *entry)
{
    if (entry->proc.launch == ZH_LAUNCH_THREAD) return entry->thread == NULL;
    return entry->proc.reaped || entry->proc.pid <= 0;
}

static int
s_append (zh_procs_t *self, s_entry_t *entry)
{
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? 2 * self->capacity : 16;
        s_entry_t **entries =
            (s_entry_t **)realloc (self->entries, capacity * sizeof (s_entry_t *));
        if (!entries) return -1;
        self->entries = entries;
        self->capacity = capacity;
    }
    self->entries[self->count++] = entry;
    return 0;
}

//  Free retired entries whose child is gone and that no job holds (PM-6).
static void
s_collect (zh_procs_t *self)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->count; i++) {
        s_entry_t *entry = self->entries[i];
        if (entry->retired && entry->job_refs == 0 && s_released (entry)) {
            if (i < self->cursor && self->cursor > 0) self->cursor--;
            s_entry_destroy (&entry);
        } else
            self->entries[kept++] = entry;
    }
    self->count = kept;
}

//  The visible proc of that name (PM-2: at most one).
static s_entry_t *
s_find (zh_procs_t *self, const char *name, size_t len)
{
    for (size_t i = 0; i < self->count; i++) {
        s_entry_t *entry = self->entries[i];
        if (!entry->retired && strlen (entry->proc.name) == len &&
            memcmp (entry->proc.name, name, len) == 0)
            return entry;
    }
    return NULL;
}

//  ---------------------------------------------------------------------
//  Calls in progress: jobs are advanced and entries freed only when the
//  outermost call ends (PM-6)

static void s_pump_jobs (zh_procs_t *self);

static void
s_enter (zh_procs_t *self, int64_t now)
{
    self->depth++;
    if (now >= 0) self->now = now;
}

//  PM-9 (bounded history): at most terminal_keep ended procs stay listed;
//  past that the oldest are retired (and freed once released), so a broker
//  that spawns ever new names does not grow without bound.
static void
s_retire_old (zh_procs_t *self)
{
    size_t terminal = 0;
    for (size_t i = 0; i < self->count; i++)
        if (!self->entries[i]->retired && zh_pstate_terminal (self->entries[i]->proc.state))
            terminal++;
    for (size_t i = 0; i < self->count && terminal > self->terminal_keep; i++) {
        s_entry_t *entry = self->entries[i];
        if (!entry->retired && zh_pstate_terminal (entry->proc.state) && entry->job_refs == 0) {
            entry->retired = true;
            terminal--;
        }
    }
}

static void
s_leave (zh_procs_t *self)
{
    if (self->depth == 1) {
        s_pump_jobs (self);
        s_retire_old (self);
        s_collect (self);
    }
    self->depth--;
}

//  ---------------------------------------------------------------------
//  Names (PM-2)

//  INVALID_NAME or PROC_EXISTS as err; 0 if name may be spawned.
static int
s_check_name (zh_procs_t *self, const char *name, zh_error_t *err)
{
    zh_error_t label_err;
    size_t len = name ? strlen (name) : 0;
    if (zh_label_check (name, len, &label_err) != 0)
        return zh_error_word (err, "INVALID_NAME", "'%.64s' is not a label: %s", name ? name : "",
                              label_err.reason);
    if (strcmp (name, "service") == 0 || strcmp (name, "local") == 0)
        return zh_error_word (err, "INVALID_NAME", "'%s' is reserved for the broker's own procs",
                              name);
    s_entry_t *entry = s_find (self, name, len);
    if (entry && !zh_pstate_terminal (entry->proc.state))
        return zh_error_word (err, "PROC_EXISTS", "'%s' is %s (pid %d)", name,
                              zh_pstate_name (entry->proc.state), (int)entry->proc.pid);
    return 0;
}

//  A new proc of that name is starting: the terminal one is retired
//  (still reaped, freed once gone), the new one listed after the others.
static zh_proc_t *
s_start (zh_procs_t *self, s_entry_t *entry, int64_t ready_timeout_ms, int64_t now, zh_error_t *err)
{
    zh_proc_t *proc = &entry->proc;
    s_entry_t *old = s_find (self, proc->name, strlen (proc->name));
    if (s_append (self, entry) != 0) {
        zh_error_word (err, "SPAWN_FAILED", "'%s': out of memory", proc->name);
        return NULL;
    }
    if (old) old->retired = true;
    proc->state = ZH_PS_STARTING;
    proc->started_ms = now;
    if (ready_timeout_ms > S_TIMEOUT_MAX) ready_timeout_ms = S_TIMEOUT_MAX;
    proc->ready_deadline = ready_timeout_ms > 0 ? now + ready_timeout_ms : 0;
    zh_info ("proc", "name=%s from=none to=starting pid=%d launch=%s ready_timeout_ms=%lld",
             proc->name, (int)proc->pid, proc->launch == ZH_LAUNCH_THREAD ? "thread" : "process",
             (long long)ready_timeout_ms);
    return proc;
}

//  ---------------------------------------------------------------------
//  Spawning

//  What a child of this manager is told.
static zh_launch_env_t
s_launch_env (zh_procs_t *self, const zh_proc_t *proc, const char *backend)
{
    zh_launch_env_t env = {.name = proc->name,
                           .proc_addr = proc->proc_addr,
                           .backend = backend,
                           .host = self->host,
                           .heartbeat_ms = self->heartbeat_ms,
                           .batch_max_bytes = self->batch_max_bytes,
                           .cpus = self->child_cpus_set ? &self->child_cpus : NULL};
    return env;
}

zh_proc_t *
zh_procs_spawn (zh_procs_t *self, const char *name, char *const argv[], char *const env[],
                int64_t ready_timeout_ms, int64_t now, zh_error_t *err)
{
    if (s_check_name (self, name, err) != 0) return NULL;
    s_entry_t *entry = s_entry_new (self, name, ZH_LAUNCH_PROCESS);
    if (!entry) {
        zh_error_word (err, "SPAWN_FAILED", "'%s': out of memory", name);
        return NULL;
    }
    s_enter (self, now);
    zh_proc_t *proc = NULL;
    zh_launch_env_t spec = s_launch_env (self, &entry->proc, self->backend_ipc);
    if (zh_launch_process (&spec, argv, env, &entry->proc.pid, &entry->out_fd, &entry->err_fd,
                           err) == 0) {
        if (s_watch (self, entry, entry->out_fd, 0) != 0 ||
            s_watch (self, entry, entry->err_fd, 1) != 0)
            zh_error_word (err, "SPAWN_FAILED", "'%s': epoll: %s", name, strerror (errno));
        else
            proc = s_start (self, entry, ready_timeout_ms, now, err);
    }
    if (!proc) {
        zh_warn ("spawn-failed", "name=%s reason=%s", name, err ? err->reason : "?");
        if (entry->proc.pid > 0) {
            kill (entry->proc.pid, SIGKILL);
            waitpid (entry->proc.pid, NULL, 0);
        }
        s_entry_destroy (&entry);
    }
    s_leave (self);
    return proc;
}

//  ---------------------------------------------------------------------
//  Thread procs (PM-3)

zh_proc_t *
zh_procs_spawn_thread (zh_procs_t *self, const char *name, zh_thread_main_fn *fn, void *arg,
                       int64_t ready_timeout_ms, int64_t now, zh_error_t *err)
{
    if (s_check_name (self, name, err) != 0) return NULL;
    s_entry_t *entry = s_entry_new (self, name, ZH_LAUNCH_THREAD);
    if (!entry) {
        zh_error_word (err, "SPAWN_FAILED", "'%s': out of memory", name);
        return NULL;
    }
    s_enter (self, now);
    entry->proc.pid = getpid ();
    zh_proc_t *proc = NULL;
    zh_launch_env_t spec = s_launch_env (self, &entry->proc, self->backend_inproc);
    entry->thread = zh_launch_thread_new (&spec, self->zmq_ctx, fn, arg, err);
    if (entry->thread) {
        if (s_watch (self, entry, zh_launch_thread_fd (entry->thread), 2) != 0)
            zh_error_word (err, "SPAWN_FAILED", "'%s': epoll: %s", name, strerror (errno));
        else
            proc = s_start (self, entry, ready_timeout_ms, now, err);
    }
    if (!proc) s_entry_destroy (&entry); //  a started thread is detached
    s_leave (self);
    return proc;
}

//  The thread's eventfd fired: join it; its return value is the exit
//  code (unless the proc already failed, PM-1).
static void
s_thread_ended (zh_procs_t *self, s_entry_t *entry)
{
    int exit_code = 0;
    int fd = zh_launch_thread_fd (entry->thread);
    epoll_ctl (self->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    if (!zh_launch_thread_join (&entry->thread, &exit_code)) {
        s_watch (self, entry, fd, 2); //  not yet: keep watching
        return;
    }
    entry->proc.reaped = true;
    if (zh_pstate_terminal (entry->proc.state)) {
        zh_info ("reaped", "proc=%s thread=yes exit_code=%d state=%s", entry->proc.name, exit_code,
                 zh_pstate_name (entry->proc.state));
        return;
    }
    s_outcome_t outcome = {.exit_code = exit_code};
    s_set_state (self, entry, ZH_PS_STOPPED, &outcome);
}

//  ---------------------------------------------------------------------
//  Readiness, stop, kill

zh_proc_t *
zh_procs_lookup (zh_procs_t *self, const char *name, size_t len)
{
    s_entry_t *entry = name ? s_find (self, name, len) : NULL;
    return entry ? &entry->proc : NULL;
}

int
zh_procs_ready (zh_procs_t *self, zh_proc_t *proc, int64_t now)
{
    if (!proc) return -1;
    s_enter (self, now);
    int rc = s_set_state (self, (s_entry_t *)proc, ZH_PS_READY, NULL);
    s_leave (self);
    return rc;
}

//  A signal to the proc's process group (PM-7: only while unreaped).
static void
s_signal_group (zh_proc_t *proc, int sig)
{
    if (proc->launch != ZH_LAUNCH_PROCESS || proc->reaped || proc->pid <= 0) return;
    if (kill (-proc->pid, sig) != 0 && errno == ESRCH) kill (proc->pid, sig);
    zh_info ("signal", "proc=%s pid=%d group=%d signal=%s", proc->name, (int)proc->pid,
             (int)proc->pid,
             sig == SIGKILL   ? "SIGKILL"
             : sig == SIGTERM ? "SIGTERM"
                              : "other");
}

//  Stage 1 of the escalation (PM-4): stopping, and STOP over the backend.
static void
s_begin_stop (zh_procs_t *self, s_entry_t *entry, int64_t timeout_ms, const char *reason,
              int64_t now)
{
    zh_proc_t *proc = &entry->proc;
    if (timeout_ms < 0) timeout_ms = 0;
    if (timeout_ms > S_TIMEOUT_MAX) timeout_ms = S_TIMEOUT_MAX; //  no overflow of now + it
    proc->stop_stage = 1;
    proc->stop_timeout_ms = timeout_ms;
    proc->stop_deadline = now + timeout_ms;
    if (s_set_state (self, entry, ZH_PS_STOPPING, NULL) != 0) return;
    if (self->events.send_stop)
        self->events.send_stop (self->events.arg, proc, reason ? reason : "stop", timeout_ms);
}

void
zh_procs_stop (zh_procs_t *self, zh_proc_t *proc, int64_t timeout_ms, const char *reason,
               int64_t now)
{
    if (!proc || zh_pstate_terminal (proc->state) || proc->state == ZH_PS_STOPPING)
        return; //  idempotent: the caller waits for the same end (PM-4)
    s_enter (self, now);
    s_begin_stop (self, (s_entry_t *)proc, timeout_ms, reason, now);
    s_leave (self);
}

int
zh_procs_kill (zh_procs_t *self, zh_proc_t *proc)
{
    if (!proc || proc->launch == ZH_LAUNCH_THREAD || zh_pstate_terminal (proc->state) ||
        proc->reaped)
        return -1; //  PM-3
    s_enter (self, -1);
    s_signal_group (proc, SIGKILL);
    proc->stop_stage = 3;
    proc->stop_deadline = 0;
    if (proc->state != ZH_PS_STOPPING) s_set_state (self, (s_entry_t *)proc, ZH_PS_STOPPING, NULL);
    s_leave (self);
    return 0;
}

//  ---------------------------------------------------------------------
//  Deadlines

//  No READY in time: failed at once (PM-1 keeps it failed when the child
//  is reaped), then the group is killed; a thread is asked to STOP.
static void
s_ready_timeout (zh_procs_t *self, s_entry_t *entry, int64_t now)
{
    zh_proc_t *proc = &entry->proc;
    char reason[S_REASON_MAX];
    snprintf (reason, sizeof reason, "no READY within %lld ms",
              (long long)(proc->ready_deadline - proc->started_ms));
    s_outcome_t outcome = {.word = "READY_TIMEOUT", .reason = reason};
    if (s_set_state (self, entry, ZH_PS_FAILED, &outcome) != 0) return;
    if (proc->launch == ZH_LAUNCH_PROCESS)
        s_signal_group (proc, SIGKILL);
    else if (self->events.send_stop)
        self->events.send_stop (self->events.arg, proc, "READY_TIMEOUT", 0);
}

//  The stop deadline passed: the next stage (PM-4), or for a thread only
//  a note that it cannot be forced (PM-3).
static void
s_escalate (zh_procs_t *self, zh_proc_t *proc, int64_t now)
{
    if (proc->launch == ZH_LAUNCH_THREAD) {
        zh_warn ("stop-unforced",
                 "proc=%s timeout_ms=%lld note=\"a thread proc cannot be "
                 "signalled; waiting for it to return\"",
                 proc->name, (long long)proc->stop_timeout_ms);
        proc->stop_deadline = 0;
        return;
    }
    if (proc->stop_stage <= 1) {
        zh_warn ("stop-escalate", "proc=%s stage=SIGTERM timeout_ms=%lld", proc->name,
                 (long long)proc->stop_timeout_ms);
        proc->stop_stage = 2;
        proc->stop_deadline = now + proc->stop_timeout_ms;
        s_signal_group (proc, SIGTERM);
    } else {
        zh_warn ("stop-escalate", "proc=%s stage=SIGKILL timeout_ms=%lld", proc->name,
                 (long long)proc->stop_timeout_ms);
        proc->stop_stage = 3;
        proc->stop_deadline = 0;
        s_signal_group (proc, SIGKILL);
    }
}

static int64_t
s_next_deadline (zh_procs_t *self, int64_t now)
{
    int64_t next = -1;
    for (size_t i = 0; i < self->count; i++) {
        const zh_proc_t *proc = &self->entries[i]->proc;
        int64_t due = 0;
        if (proc->state == ZH_PS_STARTING)
            due = proc->ready_deadline;
        else if (proc->state == ZH_PS_STOPPING)
            due = proc->stop_deadline;
        if (due > 0 && (next < 0 || due < next)) next = due;
    }
    if (next < 0) return -1;
    return next > now ? next - now : 0;
}

int64_t
zh_procs_tick (zh_procs_t *self, int64_t now)
{
    s_enter (self, now);
    for (size_t i = 0; i < self->count; i++) {
        s_entry_t *entry = self->entries[i];
        zh_proc_t *proc = &entry->proc;
        if (proc->state == ZH_PS_STARTING && proc->ready_deadline > 0 &&
            now >= proc->ready_deadline)
            s_ready_timeout (self, entry, now);
        else if (proc->state == ZH_PS_STOPPING && proc->stop_deadline > 0 &&
                 now >= proc->stop_deadline)
            s_escalate (self, proc, now);
    }
    s_leave (self);
    return s_next_deadline (self, now);
}

//  ---------------------------------------------------------------------
//  Exits

//  The child's wait status, as the terminal state it means.
static void
s_child_gone (zh_procs_t *self, s_entry_t *entry, int status, bool lost)
{
    zh_proc_t *proc = &entry->proc;
    proc->reaped = true;
    if (zh_pstate_terminal (proc->state)) {
        zh_info ("reaped", "proc=%s pid=%d state=%s", proc->name, (int)proc->pid,
                 zh_pstate_name (proc->state));
        s_drain_pipes (entry);
        return;
    }
    s_outcome_t outcome = {0};
    if (lost) {
        outcome.word = "EXIT_UNKNOWN";
        outcome.reason = "its exit status was collected elsewhere (SIGCHLD ignored?)";
        s_set_state (self, entry, ZH_PS_FAILED, &outcome);
    } else if (WIFSIGNALED (status)) {
        outcome.signal = WTERMSIG (status);
        outcome.core_dumped = WCOREDUMP (status);
        s_set_state (self, entry, ZH_PS_KILLED, &outcome);
    } else {
        outcome.exit_code = WEXITSTATUS (status);
        s_set_state (self, entry, ZH_PS_STOPPED, &outcome);
    }
}

void
zh_procs_reap (zh_procs_t *self, int64_t now)
{
    s_enter (self, now);
    for (size_t i = 0; i < self->count; i++) {
        s_entry_t *entry = self->entries[i];
        zh_proc_t *proc = &entry->proc;
        if (proc->launch != ZH_LAUNCH_PROCESS || proc->reaped || proc->pid <= 0) continue;
        //  PM-8: see the exit without reaping, so the group id is still
        //  ours; end the group; then reap.
        siginfo_t info;
        memset (&info, 0, sizeof info);
        int rc;
        do
            rc = waitid (P_PID, (id_t)proc->pid, &info, WEXITED | WNOHANG | WNOWAIT);
        while (rc < 0 && errno == EINTR);
        if (rc < 0 && errno == ECHILD) {
            s_child_gone (self, entry, 0, true);
            continue;
        }
        if (rc < 0 || info.si_pid != proc->pid) continue; //  still running
        if (kill (-proc->pid, SIGKILL) == 0)
            zh_debug ("group-ended", "proc=%s group=%d", proc->name, (int)proc->pid);
        int status = 0;
        pid_t reaped;
        do
            reaped = waitpid (proc->pid, &status, WNOHANG);
        while (reaped < 0 && errno == EINTR);
        if (reaped == proc->pid)
            s_child_gone (self, entry, status, false);
        else if (reaped < 0 && errno == ECHILD)
            s_child_gone (self, entry, 0, true);
    }
    s_leave (self);
}

//  ---------------------------------------------------------------------
//  Polling

int
zh_procs_poll_fd (zh_procs_t *self)
{
    return self->epoll_fd;
}

void
zh_procs_poll (zh_procs_t *self)
{
    struct epoll_event events[64];
    s_enter (self, -1); //  no entry is freed before the batch is handled (PM-6)
    int n = epoll_wait (self->epoll_fd, events, 64, 0);
    for (int i = 0; i < n; i++) {
        s_watch_t *watch = (s_watch_t *)events[i].data.ptr;
        s_entry_t *entry = watch->entry;
        if (watch->what == 2) {
            if (entry->thread) s_thread_ended (self, entry);
        } else if (*s_stream_fd (entry, watch->what) >= 0)
            s_read_stream (entry, watch->what, S_READ_BUDGET);
    }
    s_leave (self);
}

//  ---------------------------------------------------------------------
//  Bulk stop (PM-5)

static void
s_job_destroy (s_job_t **job_p)
{
    s_job_t *job = *job_p;
    for (size_t i = 0; i < job->count; i++)
        job->members[i].entry->job_refs--;
    free (job->members);
    free (job);
    *job_p = NULL;
}

//  Record the members that ended, then start pending ones while fewer
//  than max_in_flight are in their escalation. A member already stopping
//  (by another caller or job) counts as in flight and is only waited for.
static void
s_job_advance (zh_procs_t *self, s_job_t *job)
{
    size_t in_flight = 0;
    for (size_t i = 0; i < job->count; i++) {
        s_member_t *member = &job->members[i];
        zh_pstate_t state = member->entry->proc.state;
        if (member->state == S_DONE) continue;
        if (zh_pstate_terminal (state)) {
            member->state = S_DONE;
            job->done++;
            if (state == ZH_PS_FAILED)
                job->failed++;
            else
                job->stopped++;
            continue;
        }
        if (state == ZH_PS_STOPPING) member->state = S_IN_FLIGHT;
        if (member->state == S_IN_FLIGHT) in_flight++;
    }
    for (size_t i = 0; i < job->count && in_flight < job->max_in_flight; i++) {
        s_member_t *member = &job->members[i];
        if (member->state != S_PENDING) continue;
        member->state = S_IN_FLIGHT;
        in_flight++;
        s_begin_stop (self, member->entry, job->timeout_ms, job->reason, self->now);
    }
}

//  Advance every job; a finished one is unlinked, then reported (the
//  callback may start another job, or end procs: start over then).
static void
s_pump_jobs (zh_procs_t *self)
{
    bool again = true;
    while (again) {
        again = false;
        self->jobs_dirty = false;
        for (s_job_t **link = &self->jobs; *link;) {
            s_job_t *job = *link;
            s_job_advance (self, job);
            if (job->done < job->count) {
                link = &job->next;
                continue;
            }
            *link = job->next;
            if (self->events.on_stop_all_done)
                self->events.on_stop_all_done (self->events.arg, job->tag, job->count, job->stopped,
                                               job->failed);
            s_job_destroy (&job);
            again = true;
            break;
        }
        if (self->jobs_dirty) again = true;
    }
}

void
zh_procs_stop_all (zh_procs_t *self, int64_t timeout_ms, int64_t max_in_flight, const char *reason,
                   int64_t now, void *tag)
{
    s_enter (self, now);
    s_job_t *job = (s_job_t *)calloc (1, sizeof (s_job_t));
    if (job) job->members = (s_member_t *)calloc (self->count + 1, sizeof (s_member_t));
    if (!job || !job->members) {
        zh_err ("stop-all", "error=\"out of memory\"");
        free (job);
        job = NULL;
    }
    for (size_t i = 0; job && i < self->count; i++) {
        s_entry_t *entry = self->entries[i];
        if (entry->retired || zh_pstate_terminal (entry->proc.state)) continue;
        entry->job_refs++;
        job->members[job->count++].entry = entry;
    }
    if (job) {
        job->tag = tag;
        job->timeout_ms = timeout_ms;
        job->max_in_flight = max_in_flight < 1 ? 1 : (size_t)max_in_flight;
        snprintf (job->reason, sizeof job->reason, "%s", reason ? reason : "stop_all");
        job->next = self->jobs;
        self->jobs = job;
        self->jobs_dirty = true; //  a nested call: the running pump takes it
        zh_info ("stop-all", "attempted=%zu max_in_flight=%zu timeout_ms=%lld", job->count,
                 job->max_in_flight, (long long)timeout_ms);
    } else if (self->events.on_stop_all_done)
        self->events.on_stop_all_done (self->events.arg, tag, 0, 0, 0);
    s_leave (self); //  starts the first stops; with nothing to stop, reports now
}

//  ---------------------------------------------------------------------
//  The table

zh_proc_t *
zh_procs_first (zh_procs_t *self)
{
    self->cursor = 0;
    return zh_procs_next (self);
}

zh_proc_t *
zh_procs_next (zh_procs_t *self)
{
    while (self->cursor < self->count) {
        s_entry_t *entry = self->entries[self->cursor++];
        if (!entry->retired) return &entry->proc;
    }
    return NULL;
}

size_t
zh_procs_live_count (zh_procs_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->count; i++)
        if (!self->entries[i]->retired && !zh_pstate_terminal (self->entries[i]->proc.state)) n++;
    return n;
}

void
zh_procs_forget (zh_procs_t *self, zh_proc_t *proc)
{
    if (!proc || !zh_pstate_terminal (proc->state)) return;
    s_enter (self, -1);
    ((s_entry_t *)proc)->retired = true;
    s_leave (self);
}

//  ---------------------------------------------------------------------
//  Construction

zh_procs_t *
zh_procs_new (void *zmq_ctx, const char *backend_ipc, const char *backend_inproc, const char *host,
              int64_t heartbeat_ms, zh_procs_events_t events)
{
    zh_procs_t *self = (zh_procs_t *)calloc (1, sizeof (zh_procs_t));
    if (!self) return NULL;
    self->epoll_fd = -1;
    self->terminal_keep = ZH_PROCS_TERMINAL_KEEP;
    self->zmq_ctx = zmq_ctx;
    self->backend_ipc = strdup (backend_ipc ? backend_ipc : "");
    self->backend_inproc = strdup (backend_inproc ? backend_inproc : "");
    self->host = strdup (host ? host : "");
    self->heartbeat_ms = heartbeat_ms;
    self->events = events;
    self->epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    if (!self->backend_ipc || !self->backend_inproc || !self->host || self->epoll_fd < 0)
        zh_procs_destroy (&self);
    return self;
}

void
zh_procs_set_terminal_keep (zh_procs_t *self, size_t keep)
{
    self->terminal_keep = keep;
}

void
zh_procs_set_batch_max (zh_procs_t *self, int64_t batch_max_bytes)
{
    self->batch_max_bytes = batch_max_bytes;
}

void
zh_procs_set_child_cpus (zh_procs_t *self, const cpu_set_t *cpus)
{
    self->child_cpus_set = cpus != NULL;
    if (cpus) self->child_cpus = *cpus;
}

void
zh_procs_destroy (zh_procs_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_procs_t *self = *self_p;
    //  SIGKILL every group first, then wait for each (no child outlives).
    for (size_t i = 0; i < self->count; i++)
        s_signal_group (&self->entries[i]->proc, SIGKILL);
    for (size_t i = 0; i < self->count; i++) {
        zh_proc_t *proc = &self->entries[i]->proc;
        if (proc->launch == ZH_LAUNCH_THREAD) {
            s_entry_t *entry = self->entries[i];
            if (entry->thread) {
                epoll_ctl (entry->epoll_fd, EPOLL_CTL_DEL, zh_launch_thread_fd (entry->thread),
                           NULL);
                zh_launch_thread_abandon (&entry->thread, proc->name);
            }
        } else if (!proc->reaped && proc->pid > 0) {
            while (waitpid (proc->pid, NULL, 0) < 0 && errno == EINTR)
                ;
            proc->reaped = true;
        }
    }
    //  Unfinished bulk stops are dropped without a callback.
    while (self->jobs) {
        s_job_t *job = self->jobs;
        self->jobs = job->next;
        s_job_destroy (&job);
    }
    for (size_t i = 0; i < self->count; i++)
        s_entry_destroy (&self->entries[i]);
    free (self->entries);
    if (self->epoll_fd >= 0) close (self->epoll_fd);
    free (self->backend_ipc);
    free (self->backend_inproc);
    free (self->host);
    free (self);
    *self_p = NULL;
}
