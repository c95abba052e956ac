/*  zh_runtime.h — where the broker lives on its machine: the runtime
    directory and its pid lock, the three ROUTER sockets and their binds,
    the advertised endpoints, and CPU pinning.

    Where it sits: at the bottom of broker/, made first by zh_broker_new
    and destroyed last. Everything above reads its endpoints and sockets;
    nothing here calls up.

    RD-1 (a directory of our own, never repaired): the runtime directory
    is created 0700, or, when it exists, accepted only if it is a real
    directory (opened with O_NOFOLLOW, checked with fstat, so a symlink
    is refused), owned by the broker's user, of mode 0700, and holding
    nothing but zhost's own files (broker.pid, backend, control). Anything
    else is refused with the reason: it is never chmodded and never
    emptied, so a wrong --runtime-dir cannot damage what it points at.
*/
#ifndef ZH_RUNTIME_H
#define ZH_RUNTIME_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>

#include "zh_config.h"
#include "zh_conn.h"
#include "zh_error.h"

typedef struct _zh_runtime_t zh_runtime_t;

//  Take the runtime dir and its lock (RD-1). NULL with err (exit status
//  1; the reason names the directory and the cause).
zh_runtime_t *zh_runtime_new (const zh_config_t *config, zh_error_t *err);
//  Closes the sockets with the config's linger, removes the socket files
//  and the pid file, releases the lock.
void zh_runtime_destroy (zh_runtime_t **self_p);

//  --cpu: make libzmq's threads run on the CPUs of the list the broker
//  may use (call before the first socket). 0, or -1 with err (exit 2
//  when none of the list is usable).
int zh_runtime_pin_setup (zh_runtime_t *self, void *ctx, zh_error_t *err);
//  Pin the calling thread (the loop) to those CPUs; logs the outcome.
void zh_runtime_pin_loop (zh_runtime_t *self);
//  The CPUs the broker started with, or NULL when not pinned (children
//  keep these: pinning the broker never pins its workers).
const cpu_set_t *zh_runtime_start_cpus (zh_runtime_t *self);

//  Make and bind the frontend (CURVE server first when curve_server is
//  not NULL: a function applied to it), backend and control ROUTERs.
//  0, or -1 with err (exit 1; 2 for a bad --advertise).
typedef int (zh_runtime_curve_fn) (void *arg, void *socket);
int zh_runtime_bind (zh_runtime_t *self, void *ctx, zh_runtime_curve_fn *curve_server,
                     void *curve_arg, zh_error_t *err);

//  The bound sockets (after zh_runtime_bind), by zh_sock_t.
void *const *zh_runtime_sockets (zh_runtime_t *self);

//  Endpoints: frontends as bound, advertised ones (the first is the
//  broker's own address), the endpoints that are "self" (advertised and
//  the bound ones that are not wildcards), backend and control.
size_t zh_runtime_bound_count (zh_runtime_t *self);
const char *zh_runtime_bound (zh_runtime_t *self, size_t i);
size_t zh_runtime_advertised_count (zh_runtime_t *self);
const char *zh_runtime_advertised (zh_runtime_t *self, size_t i);
size_t zh_runtime_self_count (zh_runtime_t *self);
const char *zh_runtime_self (zh_runtime_t *self, size_t i);
const char *zh_runtime_backend_ipc (zh_runtime_t *self);
const char *zh_runtime_backend_inproc (zh_runtime_t *self);
const char *zh_runtime_control_ipc (zh_runtime_t *self);

#endif
