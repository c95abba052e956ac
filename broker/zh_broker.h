/*  zh_broker.h — zhost-broker: the per-machine broker of ZHP/1.

    Where it sits: main.c builds a zh_config_t, then zh_broker_new binds the
    sockets (frontend, backend, control) and zh_broker_run serves until a
    shutdown (SIGTERM, SIGINT, or zh_broker_stop). Programs that embed the
    broker link libzhbroker and call the same three functions.

    The caller must block SIGTERM, SIGINT, SIGHUP and SIGCHLD in every
    thread before zh_broker_new (zh_broker_block_signals does it), so the
    broker can read them from a signalfd in its loop.
*/
#ifndef ZH_BROKER_H
#define ZH_BROKER_H

#include <stdio.h>

#include "zh_config.h"
#include "zh_error.h"
#include "zh_procs.h"

typedef struct _zh_broker_t zh_broker_t;

//  Block the signals the broker reads from its signalfd. Call first in
//  main(), before any thread starts. 0 or -1.
int zh_broker_block_signals (void);

//  Validate config, take the runtime dir, bind every socket. NULL with err
//  (reason says what failed: the endpoint, the path, the errno text). The
//  caller keeps config; the broker updates in it the settings a reload
//  applies (zh_config_reloadable), so the `config` op stays true.
zh_broker_t *zh_broker_new (zh_config_t *config, zh_error_t *err);
void zh_broker_destroy (zh_broker_t **self_p);

//  Print the bound endpoints and "ready" (docs/broker.md, Start).
void zh_broker_print_endpoints (zh_broker_t *self, FILE *out);

//  Serve until shutdown. Returns the process exit code (0 after a clean
//  shutdown).
int zh_broker_run (zh_broker_t *self);

//  Spawn an in-process proc: fn runs on a thread of its own and connects
//  to the broker's inproc backend (see zh_thread_main_fn in zh_procs.h).
//  Call before zh_broker_run or from the broker's own thread. 0, or -1
//  with err (INVALID_NAME, PROC_EXISTS, SPAWN_FAILED).
int zh_broker_spawn_thread (zh_broker_t *self, const char *name, zh_thread_main_fn *fn, void *arg,
                            int64_t ready_timeout_ms, zh_error_t *err);

//  The command line and environment SIGHUP reloads from (main's argv and
//  environ, borrowed for the broker's life). Without it SIGHUP is logged
//  and ignored (an embedded broker has no file to reread).
void zh_broker_set_reload (zh_broker_t *self, int argc, char **argv, char **envp);

//  Reload now, as SIGHUP does: read the settings again (flags > env >
//  config file), apply log-level and the CURVE key directories (read
//  again even when their paths did not change; connections whose key was
//  removed get BYE), and log every change, naming those that need a
//  restart. A file that no longer parses changes nothing. Call from the
//  broker's own thread.
void zh_broker_reload (zh_broker_t *self);

//  Ask a running broker to shut down, as SIGTERM would. Thread-safe.
void zh_broker_stop (zh_broker_t *self);

#endif
