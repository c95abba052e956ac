/*  zh_test_broker.h — a zhost broker embedded in a unit test: configured
    from flags on a tcp port of its own and a fresh runtime dir, run on a
    thread, stopped and freed. Header-only, for tests/unit/test_*.c that
    need a real broker (test_embedded, test_libzhost).

        zh_test_broker_t t;
        zh_test_broker_new (&t, "--linger", "200ms", NULL);   // asserts
        ... zh_broker_spawn_thread (t.broker, ...) ...
        zh_test_broker_run (&t);                             // on a thread
        ... talk to t.frontend ...
        assert_int_equal (zh_test_broker_end (&t), 0);       // its exit code

    It asserts with cmocka: include it after <cmocka.h>.
*/
#ifndef ZH_TEST_BROKER_H
#define ZH_TEST_BROKER_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zh_broker.h"

typedef struct {
    char rundir[64];
    char frontend[256]; //  the bound tcp endpoint
    zh_config_t *config;
    zh_broker_t *broker;
    pthread_t thread;
    bool running;
} zh_test_broker_t;

//  Configure and create the broker: --frontend tcp://127.0.0.1:0, a new
//  runtime dir, then the extra flags (NULL-terminated). Asserts success.
static inline void
zh_test_broker_new (zh_test_broker_t *t, ...)
{
    memset (t, 0, sizeof *t);
    snprintf (t->rundir, sizeof t->rundir, "/tmp/zh-unit-XXXXXX");
    assert_non_null (mkdtemp (t->rundir));
    char *argv[32] = {"test", "--frontend", "tcp://127.0.0.1:0", "--runtime-dir", t->rundir};
    int argc = 5;
    va_list ap;
    va_start (ap, t);
    for (char *arg; argc < 31 && (arg = va_arg (ap, char *));)
        argv[argc++] = arg;
    va_end (ap);
    argv[argc] = NULL;
    t->config = zh_config_new ();
    zh_error_t err;
    char *envp[] = {NULL};
    assert_int_equal (zh_config_load (t->config, argc, argv, envp, &err), 0);
    t->broker = zh_broker_new (t->config, &err);
    assert_non_null (t->broker);
    char *endpoints = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&endpoints, &size);
    zh_broker_print_endpoints (t->broker, out);
    fclose (out);
    assert_int_equal (sscanf (endpoints, "frontend %255s", t->frontend), 1);
    free (endpoints);
}

static inline void *
zh_test_broker_main (void *broker)
{
    return (void *)(intptr_t)zh_broker_run ((zh_broker_t *)broker);
}

//  Run the broker's loop on a thread of its own.
static inline void
zh_test_broker_run (zh_test_broker_t *t)
{
    assert_int_equal (pthread_create (&t->thread, NULL, zh_test_broker_main, t->broker), 0);
    t->running = true;
}

//  Stop the broker (as SIGTERM would), join it, free everything and remove
//  the runtime dir. Returns zh_broker_run's exit code.
static inline int
zh_test_broker_end (zh_test_broker_t *t)
{
    void *code = NULL;
    if (t->running) {
        zh_broker_stop (t->broker);
        pthread_join (t->thread, &code);
    }
    zh_broker_destroy (&t->broker);
    assert_null (t->broker);
    zh_config_destroy (&t->config);
    rmdir (t->rundir);
    return (int)(intptr_t)code;
}

#endif
