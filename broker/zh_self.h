/*  zh_self.h — what this broker is: its address, its agent's, its
    incarnation and its phase.

    Where it sits: filled in by zh_broker.c (the owner, and the only
    writer) once the sockets are bound; the parts that speak for the
    broker (the handshakes in BOOTSTRAP and WELCOME, the host agent in its
    answers) keep a pointer to it and read it.

    The phase: serving → stopping (children first: ATTACH and HELLO get
    ERROR 503, admin ops SHUTTING_DOWN) → draining (BYE sent to every
    connection; SENDs are returned SHUTDOWN) → done (the loop ended).
*/
#ifndef ZH_SELF_H
#define ZH_SELF_H

#include <stdint.h>

#include "zh_addr.h"

typedef enum {
    ZH_PHASE_SERVING = 0, //  normal operation
    ZH_PHASE_STOPPING,    //  stopping every child before the drain
    ZH_PHASE_DRAINING,    //  BYE sent; flushing for the linger
    ZH_PHASE_DONE         //  the loop has ended
} zh_phase_t;

typedef struct {
    char host[ZH_ADDR_MAX + 1];         //  the first advertised endpoint
    char agent_addr[ZH_ADDR_MAX + 1];   //  host_agent.service@<host>: src of answers
    char service_addr[ZH_ADDR_MAX + 1]; //  service@<host>: src of RETURNs
    uint64_t incarnation;               //  random per broker start
    zh_phase_t phase;                   //  where the broker is in its life
} zh_self_t;

//  "serving", "stopping", "draining", "done".
static inline const char *
zh_phase_name (zh_phase_t phase)
{
    static const char *names[] = {"serving", "stopping", "draining", "done"};
    return (unsigned)phase <= ZH_PHASE_DONE ? names[phase] : "?";
}

#endif
