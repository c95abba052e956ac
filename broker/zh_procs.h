/*  zh_procs.h — the process manager: spawn, readiness, exit monitor,
    stop/kill escalation and bulk stop of the procs of this machine.

    Where it sits: inside the broker's loop, beside the sockets. The broker
    asks it to spawn (host agent `spawn` op, --spawn at start), tells it
    when a READY arrives on the backend, and calls zh_procs_tick each loop
    turn; the manager calls back on every state change, and when a STOP
    must be sent over the backend (the broker owns the sockets). It never
    blocks the loop: child output is read from non-blocking pipes, exits
    are learnt from SIGCHLD (the broker's signalfd) with waitpid(WNOHANG),
    deadlines are checked in tick.

    Lifecycle (docs/design.md):  starting → ready → stopping → stopped{exit_code}
                                                        | killed{signal, core}
                                                        | failed{reason}
    starting and ready may also go straight to a terminal state, and
    starting to stopping. Every other transition is refused and logged
    (PM-1). A terminal proc's name may be spawned again (PM-2).

    Two launchers (zh_launch.c) stand behind one interface:
    - ZH_LAUNCH_PROCESS: fork/exec of a program in a process group of its
      own, stdout/stderr on pipes (each line logged with the proc name,
      the last ZH_TAIL_LINES kept as its tail, each with its stream);
    - ZH_LAUNCH_THREAD: an in-process proc, a function run on a thread
      that connects to the broker's inproc backend; used by tests and by
      programs that embed the broker. A thread cannot be signalled: its
      stop escalation ends at STOP, and kill is refused (PM-3).

    The pipes and thread ends are watched through one epoll set
    (zh_procs_poll_fd), which the broker polls as a single fd: there is no
    cap on the number of procs, and a loop turn costs the same with one
    proc or a thousand.

    Stop escalation (PM-4): STOP to the proc → wait timeout → SIGTERM to
    its process group → wait timeout → SIGKILL to the group. Idempotent:
    stopping a stopping proc changes nothing (the caller just waits for the
    same terminal state).

    PM-8 (the group ends with its leader): a process proc's exit is seen
    with waitid(WNOWAIT), before it is reaped, so its pid (= its group id)
    cannot be reused yet; the whole group then gets SIGKILL, and only then
    is the leader reaped. Grandchildren that stayed in the group never
    outlive their proc (one that left it with setsid is out of reach).
*/
#ifndef ZH_PROCS_H
#define ZH_PROCS_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "zh_addr.h"
#include "zh_error.h"
#include "zh_launch.h"

#define ZH_TAIL_LINES 100
#define ZH_LINE_MAX   1024

typedef enum {
    ZH_PS_STARTING = 0,
    ZH_PS_READY,
    ZH_PS_STOPPING,
    ZH_PS_STOPPED, //  exited by itself: exit_code
    ZH_PS_KILLED,  //  ended by a signal: signal, core_dumped
    ZH_PS_FAILED   //  reason (READY_TIMEOUT, SPAWN_FAILED, …)
} zh_pstate_t;

//  "starting", "ready", …
const char *zh_pstate_name (zh_pstate_t state);
static inline bool
zh_pstate_terminal (zh_pstate_t state)
{
    return state >= ZH_PS_STOPPED;
}

typedef enum { ZH_LAUNCH_PROCESS = 0, ZH_LAUNCH_THREAD } zh_launch_t;

//  A proc as the rest of the broker sees it. Written only by zh_procs.c;
//  what only the manager needs (pipes, tail, thread) is private to it.
typedef struct _zh_proc_t zh_proc_t;
struct _zh_proc_t {
    char name[ZH_LABEL_MAX + 1];     //  a label; also the proc id and routing id
    char proc_addr[ZH_ADDR_MAX + 1]; //  name@<advertised endpoint>
    zh_launch_t launch;              //  a process or a thread
    pid_t pid;                       //  PROCESS: child pid (= its group); THREAD: getpid ()
    zh_pstate_t state;               //  where it is in the lifecycle
    int exit_code;                   //  STOPPED
    int signal;                      //  KILLED
    bool core_dumped;                //  KILLED
    char reason_word[32];            //  FAILED: READY_TIMEOUT, EXIT_UNKNOWN, …
    char reason[160];                //  FAILED: the sentence
    bool reaped;                     //  exit status collected (or thread joined)
    int64_t started_ms;              //  when it was spawned
    int64_t ready_deadline;          //  0: none (ready, or timeout 0 = forever)
    int stop_stage;                  //  0 none, 1 STOP sent, 2 SIGTERM, 3 SIGKILL
    int64_t stop_deadline;           //  when the next escalation is due (0: none)
    int64_t stop_timeout_ms;         //  each stage's wait
};

typedef struct {
    //  Every state change, after the proc's fields were updated. On a
    //  terminal state the proc's pipes are drained first, so the tail is
    //  complete.
    void (*on_state) (void *arg, zh_proc_t *proc, zh_pstate_t old_state);
    //  One line of a process proc's output (stream "stdout" or "stderr"),
    //  after it was logged and kept in the tail; line has no newline.
    void (*on_output) (void *arg, zh_proc_t *proc, const char *stream, const char *line,
                       size_t len);
    //  Send STOP {reason, timeout_ms} to the proc over the backend.
    void (*send_stop) (void *arg, zh_proc_t *proc, const char *reason, int64_t timeout_ms);
    //  A bulk stop (zh_procs_stop_all) finished: job is the caller's tag.
    void (*on_stop_all_done) (void *arg, void *job, size_t attempted, size_t stopped,
                              size_t failed);
    void *arg;
} zh_procs_events_t;

typedef struct _zh_procs_t zh_procs_t;

//  backend_ipc goes to ZHOST_BACKEND for processes, backend_inproc to
//  threads; host (the advertised frontend) to ZHOST_HOST and into every
//  proc address (name@host); heartbeat_ms to ZHOST_HEARTBEAT_MS. zmq_ctx
//  is the broker's context, handed to thread procs.
zh_procs_t *zh_procs_new (void *zmq_ctx, const char *backend_ipc, const char *backend_inproc,
                          const char *host, int64_t heartbeat_ms, zh_procs_events_t events);
//  Kills (SIGKILL to each group) and reaps every child still alive.
void zh_procs_destroy (zh_procs_t **self_p);

//  The CPUs every proc started from now on may run on (process or thread),
//  whatever the starting thread's own affinity; NULL: inherit it. The
//  broker sets its start-up CPUs here when --cpu pins its own threads.
void zh_procs_set_child_cpus (zh_procs_t *self, const cpu_set_t *cpus);

//  ZHOST_BATCH_MAX_BYTES for the processes spawned from now on (§14; 0:
//  the broker takes no BATCH).
void zh_procs_set_batch_max (zh_procs_t *self, int64_t batch_max_bytes);

//  Spawn a process. argv is NULL-terminated; env is a NULL-terminated
//  list of "KEY=VALUE" merged over the broker's environment, with the
//  ZHOST_* variables set last. ready_timeout_ms 0 waits forever. Errors,
//  as err->word: INVALID_NAME (not a label, or `service`/`local`),
//  PROC_EXISTS (a live proc has that name), SPAWN_FAILED (fork or exec
//  failed: the errno text).
zh_proc_t *zh_procs_spawn (zh_procs_t *self, const char *name, char *const argv[],
                           char *const env[], int64_t ready_timeout_ms, int64_t now,
                           zh_error_t *err);

//  Spawn an in-process proc on a thread. Same errors as zh_procs_spawn.
zh_proc_t *zh_procs_spawn_thread (zh_procs_t *self, const char *name, zh_thread_main_fn *fn,
                                  void *arg, int64_t ready_timeout_ms, int64_t now,
                                  zh_error_t *err);

//  The proc of that name (live or terminal, the latest one), or NULL.
zh_proc_t *zh_procs_lookup (zh_procs_t *self, const char *name, size_t len);

//  READY arrived from the proc's routing id: starting → ready.
//  -1 if the proc is not starting (the broker answers ERROR 403).
int zh_procs_ready (zh_procs_t *self, zh_proc_t *proc, int64_t now);

//  Begin (or join) the stop escalation. No-op on a terminal proc.
void zh_procs_stop (zh_procs_t *self, zh_proc_t *proc, int64_t timeout_ms, const char *reason,
                    int64_t now);

//  Stop every proc that is not terminal now, at most max_in_flight
//  escalations of this job at once (PM-5); procs already stopping count
//  as in flight and are waited for, not stopped twice. When the last one
//  is terminal, events.on_stop_all_done (job, attempted, stopped, failed)
//  is called once: attempted = procs not terminal when it began, stopped =
//  those that ended stopped or killed, failed = the rest. With nothing to
//  stop it is called before this returns.
void zh_procs_stop_all (zh_procs_t *self, int64_t timeout_ms, int64_t max_in_flight,
                        const char *reason, int64_t now, void *job);

//  SIGKILL the proc's group now. -1 for a thread (PM-3) or terminal proc.
int zh_procs_kill (zh_procs_t *self, zh_proc_t *proc);

//  Collect exited children (call on SIGCHLD, and harmless any time).
void zh_procs_reap (zh_procs_t *self, int64_t now);

//  Ready deadlines and stop escalation; returns ms until the next
//  deadline (or -1 if none).
int64_t zh_procs_tick (zh_procs_t *self, int64_t now);

//  One fd (an epoll set) that is readable when a proc's output or a
//  thread's end waits; then call zh_procs_poll, which handles what is
//  ready without blocking.
int zh_procs_poll_fd (zh_procs_t *self);
void zh_procs_poll (zh_procs_t *self);

//  Iterate all procs (live and terminal), in spawn order.
zh_proc_t *zh_procs_first (zh_procs_t *self);
zh_proc_t *zh_procs_next (zh_procs_t *self);
size_t zh_procs_live_count (zh_procs_t *self);

//  PM-9: at most this many ended procs stay listed (the oldest are
//  forgotten first); ZH_PROCS_TERMINAL_KEEP by default.
#define ZH_PROCS_TERMINAL_KEEP 1024
void zh_procs_set_terminal_keep (zh_procs_t *self, size_t keep);

//  Drop a terminal proc (keeps the table small): lookup and iteration no
//  longer see it, and it is freed once reaped. No-op on a live proc.
//  Without it, a name's latest terminal entry is kept until the name is
//  spawned again.
void zh_procs_forget (zh_procs_t *self, zh_proc_t *proc);

//  Copy the tail into buf as lines joined by '\n' (NUL-terminated).
size_t zh_proc_tail (const zh_proc_t *proc, char *buf, size_t size);

//  Lines in the tail (at most ZH_TAIL_LINES), and one of them, oldest
//  first (NULL past the end).
size_t zh_proc_tail_count (const zh_proc_t *proc);
const char *zh_proc_tail_line (const zh_proc_t *proc, size_t i);
//  The stream of that line: "stdout" or "stderr" (NULL past the end).
const char *zh_proc_tail_stream (const zh_proc_t *proc, size_t i);

#endif
