/*  main.c — zhost-broker's entry point.

    Where it sits: the top. Blocks the signals the broker reads from its
    signalfd, loads the configuration (flags > ZHOST_* env > config file >
    defaults), then builds and runs the broker, which rereads the same
    sources on SIGHUP. Exit codes: 0 after a clean
    shutdown, 1 on a start-up failure, 2 on a usage or configuration error.
*/
#include <stdio.h>
#include <stdlib.h>

#include "zh_broker.h"
#include "zh_config.h"
#include "zh_log.h"

extern char **environ;

int
main (int argc, char **argv)
{
    zh_broker_block_signals ();
    zh_config_t *config = zh_config_new ();
    if (!config) {
        fprintf (stderr, "zhost-broker: out of memory\n");
        return 1;
    }
    zh_error_t err;
    if (zh_config_load (config, argc, argv, environ, &err) != 0) {
        fprintf (stderr, "zhost-broker: %s\n", err.reason);
        fprintf (stderr, "Try 'zhost-broker --help'.\n");
        zh_config_destroy (&config);
        return 2;
    }
    if (config->help) {
        zh_config_help (stdout, "zhost-broker");
        zh_config_destroy (&config);
        return 0;
    }
    if (config->version) {
        printf ("zhost-broker %s (ZHP/1)\n", ZH_VERSION_STRING);
        zh_config_destroy (&config);
        return 0;
    }
    zh_log_level_t level = ZH_LOG_INFO;
    zh_log_level_parse (config->log_level, &level);
    zh_log_set_level (level);

    zh_broker_t *broker = zh_broker_new (config, &err);
    if (!broker) {
        fprintf (stderr, "zhost-broker: %s\n", err.reason);
        zh_config_destroy (&config);
        return err.exit_status ? err.exit_status : 1;
    }
    zh_broker_set_reload (broker, argc, argv, environ);
    zh_broker_print_endpoints (broker, stdout);
    int code = zh_broker_run (broker);
    zh_broker_destroy (&broker);
    zh_config_destroy (&config);
    return code;
}
