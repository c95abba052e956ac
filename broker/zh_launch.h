/*  zh_launch.h — starting a proc: fork/exec of a program with its
    environment and output pipes, or a function on a thread of its own.

    Where it sits: below the process manager (zh_procs.c), which owns the
    state machine and asks here only to start a child; nothing here knows
    of states, deadlines or the broker.

    - A process: fork, then in the child a process group of its own,
      PR_SET_PDEATHSIG(SIGKILL) with the check for a parent that already
      changed, the signal dispositions and mask reset, stdin /dev/null and
      stdout/stderr on pipes, every other fd closed, the CPUs of the
      broker's start (not its --cpu), execvpe. An exec failure comes back
      over a CLOEXEC status pipe as the child's errno.
    - A thread: the function runs with the broker's zmq context (inproc
      needs it); an eventfd turns readable when it returned. The launcher
      and the thread share the state: the last to let go frees it, so a
      thread that ignores STOP outlives a destroyed manager, detached.
*/
#ifndef ZH_LAUNCH_H
#define ZH_LAUNCH_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "zh_error.h"

//  The function an in-process proc runs on its thread. proc_addr is its
//  ZHOST_PROC, backend the inproc endpoint to connect to (with ROUTING_ID
//  = its proc id), host the advertised frontend. It must send READY, and
//  return when it gets STOP; its return value is its exit code.
//  zmq_ctx is the broker's context (inproc needs the same one).
typedef int (zh_thread_main_fn) (void *zmq_ctx, const char *proc_addr, const char *backend,
                                 const char *host, int64_t heartbeat_ms, void *arg);

//  What a child is told (the ZHOST_* environment of docs/design.md).
typedef struct {
    const char *name;        //  the proc's name, for error messages
    const char *proc_addr;   //  ZHOST_PROC
    const char *backend;     //  ZHOST_BACKEND (ipc for processes, inproc for threads)
    const char *host;        //  ZHOST_HOST
    int64_t heartbeat_ms;    //  ZHOST_HEARTBEAT_MS
    int64_t batch_max_bytes; //  ZHOST_BATCH_MAX_BYTES (0: the broker takes no BATCH)
    const cpu_set_t *cpus;   //  the CPUs it may run on; NULL: inherit
} zh_launch_env_t;

//  Start a program: argv NULL-terminated; extra_env "KEY=VALUE" strings
//  merged over the broker's environment (the last of repeated keys wins),
//  the ZHOST_* variables set last. On success *pid is the child (and its
//  process group), *out_fd and *err_fd the read ends of its stdout and
//  stderr (non-blocking, CLOEXEC). 0, or -1 with err (word SPAWN_FAILED,
//  the errno text).
int zh_launch_process (const zh_launch_env_t *env, char *const argv[], char *const extra_env[],
                       pid_t *pid, int *out_fd, int *err_fd, zh_error_t *err);

typedef struct _zh_launch_thread_t zh_launch_thread_t;

//  Start fn on a thread. NULL with err (word SPAWN_FAILED).
zh_launch_thread_t *zh_launch_thread_new (const zh_launch_env_t *env, void *zmq_ctx,
                                          zh_thread_main_fn *fn, void *arg, zh_error_t *err);

//  Readable (an eventfd) once fn returned.
int zh_launch_thread_fd (zh_launch_thread_t *self);

//  If fn returned: join the thread, free our share, set *exit_code and
//  *self_p NULL, true. Otherwise false (nothing changes).
bool zh_launch_thread_join (zh_launch_thread_t **self_p, int *exit_code);

//  Let go: join a thread that returned, detach one still running (it
//  frees its state when it ends). Sets *self_p NULL. Logs a detach.
void zh_launch_thread_abandon (zh_launch_thread_t **self_p, const char *name);

#endif
