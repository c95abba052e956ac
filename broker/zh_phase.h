/*  zh_phase.h — where the broker is in its life: one value, owned and
    written by the loop (zh_broker.c) alone; the parts read it.

    serving → stopping (children first: ATTACH and HELLO get ERROR 503,
    admin ops SHUTTING_DOWN) → draining (BYE sent to every connection;
    SENDs are returned SHUTDOWN) → done (the loop ends).
*/
#ifndef ZH_PHASE_H
#define ZH_PHASE_H

typedef enum {
    ZH_PHASE_SERVING = 0, //  normal operation
    ZH_PHASE_STOPPING,    //  stopping every child before the drain
    ZH_PHASE_DRAINING,    //  BYE sent; flushing for the linger
    ZH_PHASE_DONE         //  the loop has ended
} zh_phase_t;

//  "serving", "stopping", "draining", "done".
static inline const char *
zh_phase_name (zh_phase_t phase)
{
    static const char *names[] = {"serving", "stopping", "draining", "done"};
    return (unsigned)phase <= ZH_PHASE_DONE ? names[phase] : "?";
}

#endif
