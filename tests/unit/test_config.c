/*  test_config.c — scenarios for common/zh_config: durations, shell words,
    defaults, precedence flags > ZHOST_* > ZPL file > defaults, list
    replacement, every class of refused input (each error names where the
    value came from and the value), --help and the print/load round trip.

    Every test passes its own envp, so the caller's environment does not
    leak in (except XDG_RUNTIME_DIR, read by zh_config_new on purpose).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zh_config.h"

static char s_tmpdir[] = "/tmp/zh_test_config.XXXXXX";

//  ---------------------------------------------------------------------------
//  Helpers

#define ARGC(argv) ((int)(sizeof (argv) / sizeof (argv)[0]) - 1)

//  zh_config_load over a literal argv: LOAD (cfg, envp, &err, "--ttl", "3")
#define LOAD(cfg, envp, err, ...)                                                                  \
    ({                                                                                             \
        char *load_argv_[] = {"zhost-broker", __VA_ARGS__, NULL};                                  \
        zh_config_load ((cfg), ARGC (load_argv_), load_argv_, (envp), (err));                      \
    })

static char *no_env[] = {NULL};

static void
assert_contains (const char *text, const char *needle)
{
    if (!strstr (text, needle)) {
        print_error ("expected to find \"%s\" in:\n%s\n", needle, text);
        fail ();
    }
}

//  Write a ZPL file in the test dir; returns its path (static buffer)
static const char *
write_file (const char *name, const char *content)
{
    static char path[256];
    snprintf (path, sizeof path, "%s/%s", s_tmpdir, name);
    FILE *file = fopen (path, "w");
    assert_non_null (file);
    fputs (content, file);
    fclose (file);
    return path;
}

//  Load argv into a fresh config and expect failure with code 2 and a reason
//  holding each of the needles.
static void
expect_refused (int argc, char **argv, char **envp, const char *needle1, const char *needle2)
{
    zh_config_t *config = zh_config_new ();
    zh_error_t err;
    assert_int_equal (zh_config_load (config, argc, argv, envp, &err), -1);
    assert_int_equal (err.exit_status, 2);
    assert_contains (err.reason, needle1);
    if (needle2) assert_contains (err.reason, needle2);
    zh_config_destroy (&config);
}

#define REFUSED(needle1, needle2, ...)                                                             \
    do {                                                                                           \
        char *refused_argv_[] = {"zhost-broker", __VA_ARGS__, NULL};                               \
        expect_refused (ARGC (refused_argv_), refused_argv_, no_env, (needle1), (needle2));        \
    } while (0)

static int
setup_tmpdir (void **state)
{
    return mkdtemp (s_tmpdir) ? 0 : -1;
}

static int
remove_tmpdir (void **state)
{
    char command[300];
    snprintf (command, sizeof command, "rm -rf '%s'", s_tmpdir);
    return system (command) == 0 ? 0 : -1;
}

//  ---------------------------------------------------------------------------
//  Defaults

static void
test_new_config_has_the_defaults_of_design_md (void **state)
{
    setenv ("XDG_RUNTIME_DIR", "/run/user/4242", 1);
    zh_config_t *config = zh_config_new ();
    assert_int_equal (config->frontend_count, 1);
    assert_string_equal (config->frontends[0], "tcp://127.0.0.1:7100");
    assert_int_equal (config->advertise_count, 0);
    assert_string_equal (config->runtime_dir, "/run/user/4242/zhost");
    assert_int_equal (config->heartbeat_ms, 1000);
    assert_int_equal (config->liveness, 3);
    assert_int_equal (config->delivery_timeout_ms, 30000);
    assert_int_equal (config->ready_timeout_ms, 30000);
    assert_int_equal (config->terminate_timeout_ms, 10000);
    assert_int_equal (config->linger_ms, 2000);
    assert_int_equal (config->max_in_flight, 16);
    assert_int_equal (config->max_msg_bytes, 16 * 1024 * 1024);
    assert_int_equal (config->hwm, 10000);
    assert_int_equal (config->ttl, 64);
    assert_int_equal (config->spawn_count, 0);
    assert_null (config->curve_secret);
    assert_null (config->curve_allow);
    assert_null (config->curve_admin);
    assert_null (config->config_file);
    assert_string_equal (config->log_level, "info");
    assert_false (config->help);
    assert_false (config->version);
    zh_config_destroy (&config);
    assert_null (config);
    zh_config_destroy (&config); //  destroying NULL is a no-op
}

static void
test_runtime_dir_without_xdg_is_tmp_zhost_uid (void **state)
{
    unsetenv ("XDG_RUNTIME_DIR");
    zh_config_t *config = zh_config_new ();
    char expected[64];
    snprintf (expected, sizeof expected, "/tmp/zhost-%u", (unsigned)getuid ());
    assert_string_equal (config->runtime_dir, expected);
    zh_config_destroy (&config);
}

static void
test_no_arguments_no_environment_keeps_defaults (void **state)
{
    zh_config_t *config = zh_config_new ();
    char *argv[] = {"zhost-broker", NULL};
    zh_error_t err;
    assert_int_equal (zh_config_load (config, 1, argv, NULL, &err), 0);
    assert_int_equal (config->heartbeat_ms, 1000);
    assert_int_equal (config->frontend_count, 1);
    zh_config_destroy (&config);
}

//  ---------------------------------------------------------------------------
//  Durations

static void
test_duration_accepts_each_unit_and_bare_zero (void **state)
{
    struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"0", 0},        {"0ms", 0},
        {"0s", 0},       {"500ms", 500},
        {"30s", 30000},  {"2m", 120000},
        {"1h", 3600000}, {"1500ms", 1500},
        {"007s", 7000},  {"9223372036854775807ms", INT64_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -1;
        zh_error_t err;
        if (zh_duration_parse (cases[i].text, &ms, &err) != 0) {
            print_error ("'%s' refused: %s\n", cases[i].text, err.reason);
            fail ();
        }
        assert_int_equal (ms, cases[i].ms);
    }
}

static void
test_duration_refuses_each_invalid_class_with_a_reason (void **state)
{
    struct {
        const char *text;
        const char *why;
    } cases[] = {
        {"", "empty"},
        {"-1s", "negative"},
        {"-0", "negative"},
        {"99999999999999999999ms", "too large"},
        {"9999999999999999h", "too large"},
        {"10x", "unit must be ms, s, m or h"},
        {"10sec", "unit must be ms, s, m or h"},
        {"1m30s", "unit must be ms, s, m or h"},
        {"10S", "unit must be ms, s, m or h"},
        {"30", "a unit is required"},
        {"1 s", "no spaces"},
        {" 1s", "no spaces"},
        {"1s ", "no spaces"},
        {"1.5s", "no fractions"},
        {"0.5s", "no fractions"},
        {"s", "whole number"},
        {"+1s", "whole number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = 12345;
        zh_error_t err;
        if (zh_duration_parse (cases[i].text, &ms, &err) != -1) {
            print_error ("'%s' accepted as %lld ms\n", cases[i].text, (long long)ms);
            fail ();
        }
        assert_int_equal (ms, 12345); //  untouched on failure
        assert_contains (err.reason, cases[i].why);
        assert_contains (err.reason, "is not a duration");
    }
    zh_error_t err;
    int64_t ms;
    assert_int_equal (zh_duration_parse ("10x", &ms, &err), -1);
    assert_string_equal (err.reason, "'10x' is not a duration (unit must be ms, s, m or h)");
}

static void
test_duration_format_is_shortest_exact_and_parses_back (void **state)
{
    struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "0"},         {1, "1ms"},        {500, "500ms"},     {1000, "1s"},
        {1500, "1500ms"}, {90000, "90s"},    {120000, "2m"},     {3600000, "1h"},
        {5400000, "90m"}, {86400000, "24h"}, {3601000, "3601s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        assert_string_equal (zh_duration_format (cases[i].ms, buf, sizeof buf), cases[i].text);
        int64_t back;
        assert_int_equal (zh_duration_parse (buf, &back, NULL), 0);
        assert_int_equal (back, cases[i].ms);
    }
}

//  ---------------------------------------------------------------------------
//  Shell words

static void
assert_split (const char *command, const char *const *expected)
{
    int argc = -1;
    zh_error_t err;
    char **argv = zh_shell_split (command, &argc, &err);
    if (!argv) {
        print_error ("split of [%s] failed: %s\n", command, err.reason);
        fail ();
    }
    int count = 0;
    while (expected[count])
        count++;
    if (argc != count) print_error ("split of [%s]: %d words, expected %d\n", command, argc, count);
    assert_int_equal (argc, count);
    for (int i = 0; i < count; i++)
        assert_string_equal (argv[i], expected[i]);
    assert_null (argv[argc]);
    zh_argv_free (&argv);
    assert_null (argv);
}

#define SPLIT(command, ...) assert_split ((command), (const char *const[]){__VA_ARGS__, NULL})

static void
test_shell_split_words_quotes_escapes_and_joins (void **state)
{
    SPLIT ("python3 w.py", "python3", "w.py");
    SPLIT ("  a \t b\n c  ", "a", "b", "c");
    SPLIT ("a 'b c' d", "a", "b c", "d");
    SPLIT ("'it''s'", "its");             //  adjacent quoted pieces join
    SPLIT ("a\"b c\"'d e'f", "ab cd ef"); //  unquoted + "" + '' + unquoted
    SPLIT ("'$HOME' \"$HOME\" $HOME `x`", "$HOME", "$HOME", "$HOME", "`x`"); //  no expansion
    SPLIT ("*.py | grep ; x", "*.py", "|", "grep", ";", "x");                //  no shell
    SPLIT ("\"a\\\"b\"", "a\"b");                                            //  \" in double quotes
    SPLIT ("\"a\\\\b\"", "a\\b");                                            //  \\ in double quotes
    SPLIT ("\"\\$x \\`y\\`\"", "$x `y`");    //  \$ and \` in double quotes
    SPLIT ("\"a\\nb\"", "a\\nb");            //  other backslashes stay
    SPLIT ("'a\\b\"c'", "a\\b\"c");          //  single quotes: all literal
    SPLIT ("a\\ b \\'c\\\"", "a b", "'c\""); //  backslash outside quotes
    SPLIT ("''", "");                        //  an empty word is a word
    SPLIT ("a '' \"\" b", "a", "", "", "b");
    SPLIT ("a\\\nb", "ab"); //  backslash-newline joins
    SPLIT ("\"a\\\nb\"", "ab");
    SPLIT ("python3 -c 'print(\"hi\")'", "python3", "-c", "print(\"hi\")");
}

static void
assert_split_refused (const char *command, const char *why, size_t offset)
{
    zh_error_t err;
    int argc = 77;
    char **argv = zh_shell_split (command, &argc, &err);
    if (argv) {
        print_error ("split of [%s] accepted (%d words)\n", command, argc);
        zh_argv_free (&argv);
        fail ();
    }
    assert_contains (err.reason, why);
    assert_int_equal (err.offset, offset);
}

static void
test_shell_split_refuses_unterminated_quotes_trailing_backslash_and_empty (void **state)
{
    assert_split_refused ("'abc", "unterminated single quote", 0);
    assert_split_refused ("a \"b", "unterminated double quote", 2);
    assert_split_refused ("\"a\\\"", "unterminated double quote", 0);
    assert_split_refused ("a 'b\"", "unterminated single quote", 2);
    assert_split_refused ("abc\\", "trailing backslash", 3);
    assert_split_refused ("", "empty command", 0);
    assert_split_refused (" \t\n ", "empty command", 0);
    assert_split_refused ("\\\n", "empty command", 0);
}

//  ---------------------------------------------------------------------------
//  Precedence and lists

static void
test_flags_beat_environment_which_beats_file_which_beats_defaults (void **state)
{
    const char *path = write_file ("precedence.cfg", "#   a comment\n"
                                                     "heartbeat = 3s\n"
                                                     "liveness = 4\n"
                                                     "ttl = 10   # inline comment\n"
                                                     "log-level = 'debug'\n"
                                                     "max-msg-bytes = 1M\n");
    char config_arg[300];
    snprintf (config_arg, sizeof config_arg, "--config=%s", path);
    char *envp[] = {"HOME=/root", "ZHOST_LIVENESS=5", "ZHOST_TTL=20", "ZHOST_PROC=x", NULL};
    zh_config_t *config = zh_config_new ();
    zh_error_t err;
    int rc = LOAD (config, envp, &err, config_arg, "--ttl", "30");
    if (rc) print_error ("%s\n", err.reason);
    assert_int_equal (rc, 0);
    assert_int_equal (config->heartbeat_ms, 3000);         //  file
    assert_int_equal (config->liveness, 5);                //  env over file
    assert_int_equal (config->ttl, 30);                    //  flag over env over file
    assert_string_equal (config->log_level, "debug");      //  file
    assert_int_equal (config->max_msg_bytes, 1048576);     //  file
    assert_int_equal (config->delivery_timeout_ms, 30000); //  default
    assert_string_equal (config->config_file, path);
    zh_config_destroy (&config);
}

static void
test_config_file_named_by_zhost_config_and_flag_wins_over_it (void **state)
{
    char env_path[300], flag_path[300];
    snprintf (env_path, sizeof env_path, "%s", write_file ("env.cfg", "hwm = 111\n"));
    snprintf (flag_path, sizeof flag_path, "%s", write_file ("flag.cfg", "hwm = 222\n"));
    char env_entry[320];
    snprintf (env_entry, sizeof env_entry, "ZHOST_CONFIG=%s", env_path);
    char *envp[] = {env_entry, NULL};

    zh_config_t *config = zh_config_new ();
    assert_int_equal (LOAD (config, envp, NULL, "--version"), 0);
    assert_int_equal (config->hwm, 111);
    assert_true (config->version);
    assert_string_equal (config->config_file, env_path);
    zh_config_destroy (&config);

    config = zh_config_new ();
    assert_int_equal (LOAD (config, envp, NULL, "--config", flag_path), 0);
    assert_int_equal (config->hwm, 222);
    assert_string_equal (config->config_file, flag_path);
    zh_config_destroy (&config);
}

static void
test_highest_source_replaces_whole_lists (void **state)
{
    const char *path = write_file ("lists.cfg", "frontend = \"tcp://10.0.0.1:1\"\n"
                                                "frontend = \"tcp://10.0.0.1:2\"\n"
                                                "advertise = \"tcp://file:1\"\n"
                                                "spawn = \"a=prog a\"\n"
                                                "spawn = \"b=prog b\"\n");
    char env_entry[320];
    snprintf (env_entry, sizeof env_entry, "ZHOST_CONFIG=%s", path);

    //  file only: file lists replace the default frontend
    char *file_only[] = {env_entry, NULL};
    zh_config_t *config = zh_config_new ();
    assert_int_equal (LOAD (config, file_only, NULL, "--ttl", "9"), 0);
    assert_int_equal (config->frontend_count, 2);
    assert_string_equal (config->frontends[0], "tcp://10.0.0.1:1");
    assert_string_equal (config->frontends[1], "tcp://10.0.0.1:2");
    assert_int_equal (config->spawn_count, 2);
    assert_string_equal (config->spawns[1].name, "b");
    assert_string_equal (config->spawns[1].command, "prog b");
    zh_config_destroy (&config);

    //  env frontends (comma-separated) replace the file's; advertise and
    //  spawn stay from the file; one --spawn replaces both file spawns
    char *envp[] = {env_entry, "ZHOST_FRONTEND=tcp://e:1,ipc:///tmp/e", NULL};
    config = zh_config_new ();
    zh_error_t err;
    int rc = LOAD (config, envp, &err, "--spawn", "c=prog c");
    if (rc) print_error ("%s\n", err.reason);
    assert_int_equal (rc, 0);
    assert_int_equal (config->frontend_count, 2);
    assert_string_equal (config->frontends[0], "tcp://e:1");
    assert_string_equal (config->frontends[1], "ipc:///tmp/e");
    assert_int_equal (config->advertise_count, 1);
    assert_string_equal (config->advertise[0], "tcp://file:1");
    assert_int_equal (config->spawn_count, 1);
    assert_string_equal (config->spawns[0].name, "c");
    zh_config_destroy (&config);

    //  repeated flags append to each other and replace the env's list
    config = zh_config_new ();
    assert_int_equal (LOAD (config, envp, NULL, "--frontend", "tcp://f:1", "--frontend=tcp://f:2"),
                      0);
    assert_int_equal (config->frontend_count, 2);
    assert_string_equal (config->frontends[0], "tcp://f:1");
    assert_string_equal (config->frontends[1], "tcp://f:2");
    zh_config_destroy (&config);
}

static void
test_flag_equals_value_form_and_spawn_splits_at_first_equals (void **state)
{
    zh_config_t *config = zh_config_new ();
    zh_error_t err;
    int rc = LOAD (config, no_env, &err, "--heartbeat=250ms", "--spawn=w=env A=1 prog",
                   "--runtime-dir=/tmp/r=x", "--ready-timeout", "0", "--help",
                   "--max-msg-bytes=1GiB", "--log-level=off");
    if (rc) print_error ("%s\n", err.reason);
    assert_int_equal (rc, 0);
    assert_int_equal (config->heartbeat_ms, 250);
    assert_int_equal (config->spawn_count, 1);
    assert_string_equal (config->spawns[0].name, "w");
    assert_string_equal (config->spawns[0].command, "env A=1 prog");
    assert_string_equal (config->runtime_dir, "/tmp/r=x");
    assert_int_equal (config->ready_timeout_ms, 0);
    assert_true (config->help);
    assert_int_equal (config->max_msg_bytes, 1024LL * 1024 * 1024);
    assert_string_equal (config->log_level, "off");
    zh_config_destroy (&config);
}

static void
test_sizes_take_bytes_and_binary_suffixes (void **state)
{
    struct {
        const char *text;
        int64_t bytes;
    } cases[] = {{"1024", 1024},       {"64K", 65536},        {"64KiB", 65536},
                 {"16M", 16777216},    {"16MiB", 16777216},   {"1G", 1073741824},
                 {"1GiB", 1073741824}, {"16777216", 16777216}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zh_config_t *config = zh_config_new ();
        assert_int_equal (LOAD (config, no_env, NULL, "--max-msg-bytes", (char *)cases[i].text), 0);
        assert_int_equal (config->max_msg_bytes, cases[i].bytes);
        zh_config_destroy (&config);
    }
}

static void
test_empty_environment_variable_counts_as_unset (void **state)
{
    char *envp[] = {"ZHOST_HEARTBEAT=", "ZHOST_FRONTEND=", NULL};
    zh_config_t *config = zh_config_new ();
    assert_int_equal (LOAD (config, envp, NULL, "--ttl", "1"), 0);
    assert_int_equal (config->heartbeat_ms, 1000);
    assert_int_equal (config->frontend_count, 1);
    zh_config_destroy (&config);
}

//  ---------------------------------------------------------------------------
//  Refused input: each error names the flag (variable, file:key) and value

static void
test_unknown_flag_missing_value_and_stray_argument_are_refused (void **state)
{
    REFUSED ("unknown flag '--bogus'", NULL, "--bogus", "1");
    REFUSED ("unknown flag '--bogus'", NULL, "--bogus=1");
    REFUSED ("unknown flag '-h'", NULL, "-h");
    REFUSED ("--heartbeat: missing value", "DURATION", "--heartbeat");
    REFUSED ("--heartbeat: missing value", NULL, "--heartbeat", "--ttl", "3");
    REFUSED ("unexpected argument 'foo'", NULL, "--ttl", "3", "foo");
    REFUSED ("unexpected argument '--'", NULL, "--");
    REFUSED ("--help takes no value", "'yes'", "--help=yes");
    REFUSED ("unknown flag '--spawnx'", NULL, "--spawnx", "a=b");
}

static void
test_bad_values_name_the_flag_and_the_value (void **state)
{
    zh_config_t *config = zh_config_new ();
    zh_error_t err;
    assert_int_equal (LOAD (config, no_env, &err, "--heartbeat", "10x"), -1);
    assert_string_equal (err.reason,
                         "--heartbeat: '10x' is not a duration (unit must be ms, s, m or h)");
    zh_config_destroy (&config);

    REFUSED ("--heartbeat: '0' is out of range (1ms to 24h)", NULL, "--heartbeat", "0");
    REFUSED ("--linger: '30' is not a duration", "unit is required", "--linger=30");
    REFUSED ("--liveness: 'abc' is not a whole number", NULL, "--liveness", "abc");
    REFUSED ("--hwm: '10k' is not a whole number", NULL, "--hwm", "10k");
    REFUSED ("--ttl: '300' is out of range (1 to 255)", NULL, "--ttl", "300");
    REFUSED ("--ttl: '0' is out of range (1 to 255)", NULL, "--ttl", "0");
    REFUSED ("--ttl: '-1' is out of range", NULL, "--ttl=-1");
    REFUSED ("--max-msg-bytes: '512' is out of range (1KiB to 1GiB)", NULL, "--max-msg-bytes",
             "512");
    REFUSED ("--max-msg-bytes: '2G' is out of range", NULL, "--max-msg-bytes", "2G");
    REFUSED ("--max-msg-bytes: '10MB' is not a size", NULL, "--max-msg-bytes", "10MB");
    REFUSED ("--log-level: 'loud' is not one of debug|info|warn|error|off", NULL, "--log-level",
             "loud");
    REFUSED ("--frontend: 'localhost:7100' is not an endpoint", NULL, "--frontend",
             "localhost:7100");
    REFUSED ("--frontend: 'tcp://a:1,tcp://b:2' is not an endpoint", "one endpoint per value",
             "--frontend", "tcp://a:1,tcp://b:2");
    REFUSED ("--runtime-dir: empty value", NULL, "--runtime-dir=");
}

static void
test_bad_spawns_name_the_flag_and_the_value (void **state)
{
    REFUSED ("--spawn: 'worker' is not NAME=COMMAND", NULL, "--spawn", "worker");
    REFUSED ("--spawn: '=python3 w.py' has an empty NAME", NULL, "--spawn", "=python3 w.py");
    REFUSED ("--spawn: 'w=': COMMAND", "empty command", "--spawn", "w=");
    REFUSED ("--spawn: 'w=   '", "empty command", "--spawn", "w=   ");
    REFUSED ("--spawn: 'w=python3 'x'", "unterminated single quote", "--spawn", "w=python3 'x");
    REFUSED ("--spawn: 'w=b'", "proc 'w' is already spawned", "--spawn", "w=a", "--spawn", "w=b");
}

static void
test_too_many_list_values_are_refused (void **state)
{
    char *argv[2 * ZH_CONFIG_LIST_MAX + 4];
    char values[ZH_CONFIG_LIST_MAX + 1][32];
    int argc = 0;
    argv[argc++] = "zhost-broker";
    for (int i = 0; i <= ZH_CONFIG_LIST_MAX; i++) {
        snprintf (values[i], sizeof values[i], "tcp://h:%d", 1000 + i);
        argv[argc++] = "--frontend";
        argv[argc++] = values[i];
    }
    argv[argc] = NULL;
    expect_refused (argc, argv, no_env, "--frontend: more than 16 values", NULL);
}

static void
test_bad_environment_values_name_the_variable (void **state)
{
    char *argv[] = {"zhost-broker", NULL};
    char *bad_duration[] = {"ZHOST_HEARTBEAT=10x", NULL};
    expect_refused (1, argv, bad_duration, "ZHOST_HEARTBEAT: '10x' is not a duration", NULL);
    char *bad_list[] = {"ZHOST_FRONTEND=tcp://a:1,,tcp://b:2", NULL};
    expect_refused (1, argv, bad_list, "ZHOST_FRONTEND: empty endpoint in", "'tcp://a:1,,tcp");
    char *bad_level[] = {"ZHOST_LOG_LEVEL=verbose", NULL};
    expect_refused (1, argv, bad_level, "ZHOST_LOG_LEVEL: 'verbose'", NULL);
    //  a flag overriding a bad variable does not hide it
    char *flagged[] = {"zhost-broker", "--heartbeat", "2s", NULL};
    expect_refused (3, flagged, bad_duration, "ZHOST_HEARTBEAT", NULL);
}

static void
expect_file_refused (const char *name, const char *content, const char *needle1,
                     const char *needle2)
{
    char path[300];
    snprintf (path, sizeof path, "%s", write_file (name, content));
    char *argv[] = {"zhost-broker", "--config", path, NULL};
    char where[320];
    snprintf (where, sizeof where, "%s", path);
    zh_config_t *config = zh_config_new ();
    zh_error_t err;
    assert_int_equal (zh_config_load (config, 3, argv, no_env, &err), -1);
    assert_int_equal (err.exit_status, 2);
    assert_contains (err.reason, where);
    assert_contains (err.reason, needle1);
    if (needle2) assert_contains (err.reason, needle2);
    zh_config_destroy (&config);
}

static void
test_bad_config_files_name_the_file_and_key (void **state)
{
    expect_file_refused ("dur.cfg", "heartbeat = 10x\n", ":1:heartbeat: '10x' is not a duration",
                         NULL);
    expect_file_refused ("key.cfg", "ttl = 3\nheartbeet = 1s\n", ":2:heartbeet: unknown key", NULL);
    //  The line is the item's own, past comments, blank lines and sections.
    expect_file_refused ("lines.cfg",
                         "# zhost\n\nttl = 3\nspawn = \"a=/bin/true\"\n#x\n  \nhwm = lots\n",
                         ":7:hwm: 'lots' is not a whole number", NULL);
    expect_file_refused ("cfg.cfg", "config = other.cfg\n", ":config: not allowed", NULL);
    expect_file_refused ("help.cfg", "help = 1\n", ":help: not allowed", NULL);
    expect_file_refused ("section.cfg", "spawn\n    worker = \"python3 w.py\"\n",
                         ":spawn: a section is not allowed", "spawn = NAME=COMMAND");
    expect_file_refused ("empty.cfg", "ttl =\n", ":ttl: empty value", NULL);
    expect_file_refused ("spawn.cfg", "spawn = \"w\"\n", ":spawn: 'w' is not NAME=COMMAND", NULL);
    expect_file_refused ("zpl.cfg", "ttl = \"3\n", "not valid ZPL", NULL);
    expect_file_refused ("indent.cfg", "  ttl = 3\n", "not valid ZPL", NULL);
}

static void
test_missing_or_unreadable_config_file_is_an_error_naming_it (void **state)
{
    char path[300];
    snprintf (path, sizeof path, "%s/no-such.cfg", s_tmpdir);
    char *argv[] = {"zhost-broker", "--config", path, NULL};
    expect_refused (3, argv, no_env, path, "No such file");

    char env_entry[320];
    snprintf (env_entry, sizeof env_entry, "ZHOST_CONFIG=%s", path);
    char *envp[] = {env_entry, NULL};
    char *bare[] = {"zhost-broker", NULL};
    expect_refused (1, bare, envp, path, "No such file");

    char *dir[] = {"zhost-broker", "--config", s_tmpdir, NULL};
    expect_refused (3, dir, no_env, s_tmpdir, "is a directory");
}

static void
test_empty_config_file_sets_nothing (void **state)
{
    char path[300];
    snprintf (path, sizeof path, "%s", write_file ("blank.cfg", ""));
    zh_config_t *config = zh_config_new ();
    assert_int_equal (LOAD (config, no_env, NULL, "--config", path), 0);
    assert_int_equal (config->ttl, 64);
    zh_config_destroy (&config);
}

//  ---------------------------------------------------------------------------
//  --help

static void
test_help_lists_every_flag_with_its_variable_and_default (void **state)
{
    struct {
        const char *flag;
        const char *env;
        const char *defval;
    } expected[] = {
        {"--frontend ENDPOINT", "ZHOST_FRONTEND", "tcp://127.0.0.1:7100"},
        {"--advertise ENDPOINT", "ZHOST_ADVERTISE", "the frontend endpoints as bound"},
        {"--runtime-dir DIR", "ZHOST_RUNTIME_DIR", "$XDG_RUNTIME_DIR/zhost or /tmp/zhost-<uid>"},
        {"--heartbeat DURATION", "ZHOST_HEARTBEAT", "1s"},
        {"--liveness N", "ZHOST_LIVENESS", "3"},
        {"--delivery-timeout DURATION", "ZHOST_DELIVERY_TIMEOUT", "30s"},
        {"--ready-timeout DURATION", "ZHOST_READY_TIMEOUT", "30s"},
        {"--terminate-timeout DURATION", "ZHOST_TERMINATE_TIMEOUT", "10s"},
        {"--linger DURATION", "ZHOST_LINGER", "2s"},
        {"--max-in-flight N", "ZHOST_MAX_IN_FLIGHT", "16"},
        {"--max-msg-bytes SIZE", "ZHOST_MAX_MSG_BYTES", "16MiB"},
        {"--hwm N", "ZHOST_HWM", "10000"},
        {"--ttl N", "ZHOST_TTL", "64"},
        {"--spawn NAME=COMMAND", NULL, "none"},
        {"--curve-secret FILE", "ZHOST_CURVE_SECRET", "none"},
        {"--curve-allow DIR", "ZHOST_CURVE_ALLOW", "none"},
        {"--curve-admin DIR", "ZHOST_CURVE_ADMIN", "none"},
        {"--config FILE", "ZHOST_CONFIG", "none"},
        {"--log-level LEVEL", "ZHOST_LOG_LEVEL", "info"},
        {"--help", NULL, NULL},
        {"--version", NULL, NULL},
    };
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    zh_config_help (out, "zhost-broker");
    fclose (out);
    assert_contains (text, "Usage: zhost-broker");
    assert_contains (text, "spawn = \"");
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        //  the block of one flag: from "  --flag" to the next "\n  --"
        char head[64];
        snprintf (head, sizeof head, "\n  %s\n", expected[i].flag);
        const char *start = strstr (text, head);
        if (!start) {
            print_error ("help has no line for %s:\n%s\n", expected[i].flag, text);
            fail ();
        }
        const char *end = strstr (start + 1, "\n  --");
        char *block = strndup (start, end ? (size_t)(end - start) + 1 : strlen (start));
        if (expected[i].env) {
            char env[64];
            snprintf (env, sizeof env, "env %s,", expected[i].env);
            assert_contains (block, env);
        }
        if (expected[i].defval) {
            char defval[96];
            snprintf (defval, sizeof defval, "default %s\n", expected[i].defval);
            assert_contains (block, defval);
        }
        free (block);
    }
    free (text);
}

//  ---------------------------------------------------------------------------
//  zh_config_print -> --config round trip

static void
assert_same_config (const zh_config_t *a, const zh_config_t *b)
{
    assert_int_equal (a->frontend_count, b->frontend_count);
    for (size_t i = 0; i < a->frontend_count; i++)
        assert_string_equal (a->frontends[i], b->frontends[i]);
    assert_int_equal (a->advertise_count, b->advertise_count);
    for (size_t i = 0; i < a->advertise_count; i++)
        assert_string_equal (a->advertise[i], b->advertise[i]);
    assert_string_equal (a->runtime_dir, b->runtime_dir);
    assert_int_equal (a->heartbeat_ms, b->heartbeat_ms);
    assert_int_equal (a->liveness, b->liveness);
    assert_int_equal (a->delivery_timeout_ms, b->delivery_timeout_ms);
    assert_int_equal (a->ready_timeout_ms, b->ready_timeout_ms);
    assert_int_equal (a->terminate_timeout_ms, b->terminate_timeout_ms);
    assert_int_equal (a->linger_ms, b->linger_ms);
    assert_int_equal (a->max_in_flight, b->max_in_flight);
    assert_int_equal (a->max_msg_bytes, b->max_msg_bytes);
    assert_int_equal (a->hwm, b->hwm);
    assert_int_equal (a->ttl, b->ttl);
    assert_int_equal (a->spawn_count, b->spawn_count);
    for (size_t i = 0; i < a->spawn_count; i++) {
        assert_string_equal (a->spawns[i].name, b->spawns[i].name);
        //  same words (a command with both quote kinds is rewritten)
        char **words_a = zh_shell_split (a->spawns[i].command, NULL, NULL);
        char **words_b = zh_shell_split (b->spawns[i].command, NULL, NULL);
        assert_non_null (words_a);
        assert_non_null (words_b);
        size_t n = 0;
        for (; words_a[n] && words_b[n]; n++)
            assert_string_equal (words_a[n], words_b[n]);
        assert_null (words_a[n]);
        assert_null (words_b[n]);
        zh_argv_free (&words_a);
        zh_argv_free (&words_b);
    }
    assert_string_equal (a->curve_secret ? a->curve_secret : "(null)",
                         b->curve_secret ? b->curve_secret : "(null)");
    assert_string_equal (a->curve_allow ? a->curve_allow : "(null)",
                         b->curve_allow ? b->curve_allow : "(null)");
    assert_string_equal (a->curve_admin ? a->curve_admin : "(null)",
                         b->curve_admin ? b->curve_admin : "(null)");
    assert_string_equal (a->cpus ? a->cpus : "(null)", b->cpus ? b->cpus : "(null)");
    assert_string_equal (a->log_level, b->log_level);
}

static void
assert_round_trip (zh_config_t *config, const char *name)
{
    char path[300];
    snprintf (path, sizeof path, "%s/%s", s_tmpdir, name);
    FILE *out = fopen (path, "w");
    assert_non_null (out);
    zh_config_print (config, out);
    fclose (out);

    zh_config_t *reloaded = zh_config_new ();
    char *argv[] = {"zhost-broker", "--config", path, NULL};
    zh_error_t err;
    int rc = zh_config_load (reloaded, 3, argv, no_env, &err);
    if (rc) print_error ("reload of printed config failed: %s\n", err.reason);
    assert_int_equal (rc, 0);
    assert_same_config (config, reloaded);
    zh_config_destroy (&reloaded);
}

static void
test_printed_defaults_load_back_the_same (void **state)
{
    zh_config_t *config = zh_config_new ();
    assert_round_trip (config, "defaults.zpl");
    zh_config_destroy (&config);
}

static void
test_printed_config_loads_back_the_same (void **state)
{
    zh_config_t *config = zh_config_new ();
    zh_error_t err;
    int rc = LOAD (config, no_env, &err, "--frontend", "tcp://*:7100", "--frontend",
                   "ipc:///tmp/zh-front#1", "--advertise", "tcp://host-a:7100", "--runtime-dir",
                   "/tmp/it's \"here\"#x", "--heartbeat", "1500ms", "--liveness", "7",
                   "--delivery-timeout", "2m", "--ready-timeout", "0", "--terminate-timeout", "1h",
                   "--linger", "0", "--max-in-flight", "3", "--max-msg-bytes", "65537", "--hwm",
                   "5", "--ttl", "255", "--spawn", "plain=python3 w.py --id 1", "--spawn",
                   "dq=echo \"a b\"", "--spawn", "both=python3 -c 'print(\"hi there\")' ''",
                   "--curve-secret", "/k/s", "--curve-allow", "/k/allow", "--curve-admin",
                   "/k/admin", "--log-level", "warn", "--cpu", "0,2-3");
    if (rc) print_error ("%s\n", err.reason);
    assert_int_equal (rc, 0);
    //  a runtime dir holding both quote characters cannot be ZPL: keep one
    free (config->runtime_dir);
    config->runtime_dir = strdup ("/tmp/it's here");
    assert_round_trip (config, "full.zpl");
    zh_config_destroy (&config);
}

static void
test_print_marks_a_value_zpl_cannot_hold (void **state)
{
    zh_config_t *config = zh_config_new ();
    free (config->runtime_dir);
    config->runtime_dir = strdup ("/tmp/\"both'");
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    zh_config_print (config, out);
    fclose (out);
    assert_contains (text, "#   runtime-dir: value not shown");
    assert_null (strstr (text, "runtime-dir ="));
    assert_contains (text, "heartbeat = 1s\n");
    assert_contains (text, "max-msg-bytes = 16MiB\n");
    assert_contains (text, "frontend = \"tcp://127.0.0.1:7100\"\n");
    free (text);
    zh_config_destroy (&config);
}

//  --cpu: the CPU list of taskset(1); each bad form says what is wrong.
static void
test_cpu_lists_parse_format_and_refuse_bad_forms (void **state)
{
    (void)state;
    cpu_set_t set;
    zh_error_t err;
    char text[64];
    const char *good[][2] = {
        {"0", "0"}, {"0,2-3", "0,2-3"}, {"3-3", "3"}, {"5,1,2", "1-2,5"}, {"1023", "1023"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal (zh_cpu_list_parse (good[i][0], &set, &err), 0);
        assert_string_equal (zh_cpu_list_format (&set, text, sizeof text), good[i][1]);
    }
    assert_int_equal (zh_cpu_list_parse ("0-3", &set, &err), 0);
    assert_int_equal (CPU_COUNT (&set), 4);
    const char *bad[][2] = {{"", "empty"},
                            {"-1", "not a CPU list"},
                            {"1-", "not a CPU list"},
                            {"a", "not a CPU list"},
                            {"1,,2", "not a CPU list"},
                            {"1,", "not a CPU list"},
                            {" 1", "not a CPU list"},
                            {"1 ", "unexpected ' '"},
                            {"1024", "beyond 1023"},
                            {"99999999999999999999", "beyond"},
                            {"3-1", "runs backwards"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal (zh_cpu_list_parse (bad[i][0], &set, &err), -1);
        if (!strstr (err.reason, bad[i][1])) fail_msg ("'%s': %s", bad[i][0], err.reason);
    }
    //  Through the config: the flag and the variable are named.
    zh_config_t *config = zh_config_new ();
    char *argv[] = {"zhost-broker", "--cpu", "2-x", NULL};
    char *envp[] = {NULL};
    assert_int_equal (zh_config_load (config, 3, argv, envp, &err), -1);
    assert_non_null (strstr (err.reason, "--cpu: '2-x'"));
    char *env_bad[] = {"ZHOST_CPU=9-2", NULL};
    char *no_args[] = {"zhost-broker", NULL};
    assert_int_equal (zh_config_load (config, 1, no_args, env_bad, &err), -1);
    assert_non_null (strstr (err.reason, "ZHOST_CPU"));
    char *env_good[] = {"ZHOST_CPU=0,1", NULL};
    assert_int_equal (zh_config_load (config, 1, no_args, env_good, &err), 0);
    assert_string_equal (config->cpus, "0,1");
    zh_config_destroy (&config);
}

//  SIGHUP's view: what differs, which of it a running broker takes, and
//  taking it (the reloadable values move, the rest stay).
typedef struct {
    char keys[8][32];
    bool reloadable[8];
    size_t count;
} s_changes_t;

static void
s_note_change (void *arg, const char *key, const char *old_value, const char *new_value,
               bool reloadable)
{
    s_changes_t *c = (s_changes_t *)arg;
    assert_string_not_equal (old_value, new_value);
    assert_true (c->count < 8);
    snprintf (c->keys[c->count], sizeof c->keys[0], "%s", key);
    c->reloadable[c->count++] = reloadable;
}

static void
test_diff_names_each_change_and_adopt_takes_only_reloadable_ones (void **state)
{
    (void)state;
    char *a_argv[] = {"zhost-broker", "--heartbeat",       "1s", "--log-level", "info",
                      "--frontend",   "tcp://127.0.0.1:1", NULL};
    char *b_argv[] = {"zhost-broker",
                      "--heartbeat",
                      "2s",
                      "--log-level",
                      "debug",
                      "--frontend",
                      "tcp://127.0.0.1:1",
                      "--frontend",
                      "tcp://127.0.0.1:2",
                      "--curve-allow",
                      "/tmp",
                      "--metrics",
                      "9100",
                      NULL};
    zh_config_t *a = zh_config_new (), *b = zh_config_new ();
    zh_error_t err;
    assert_int_equal (zh_config_load (a, 7, a_argv, no_env, &err), 0);
    assert_int_equal (zh_config_load (b, 13, b_argv, no_env, &err), 0);
    s_changes_t c = {0};
    zh_config_diff (a, a, s_note_change, &c);
    assert_int_equal (c.count, 0);
    zh_config_diff (a, b, s_note_change, &c);
    //  In --help's order: frontend, heartbeat, curve-allow, metrics, log-level.
    assert_int_equal (c.count, 5);
    assert_string_equal (c.keys[0], "frontend");
    assert_false (c.reloadable[0]);
    assert_string_equal (c.keys[1], "heartbeat");
    assert_false (c.reloadable[1]);
    assert_string_equal (c.keys[2], "curve-allow");
    assert_true (c.reloadable[2]);
    assert_string_equal (c.keys[3], "metrics");
    assert_false (c.reloadable[3]);
    assert_string_equal (c.keys[4], "log-level");
    assert_true (c.reloadable[4]);
    assert_int_equal (zh_config_adopt (a, b, "log-level"), 0);
    assert_int_equal (zh_config_adopt (a, b, "curve-allow"), 0);
    assert_int_equal (zh_config_adopt (a, b, "heartbeat"), -1);
    assert_int_equal (zh_config_adopt (a, b, "no-such-key"), -1);
    assert_string_equal (a->log_level, "debug");
    assert_string_equal (a->curve_allow, "/tmp");
    assert_int_equal (a->heartbeat_ms, 1000);
    assert_null (a->metrics);
    zh_config_destroy (&a);
    zh_config_destroy (&b);
}

static void
test_metrics_addresses_are_checked (void **state)
{
    (void)state;
    const char *good[] = {
        "9100", "0", "127.0.0.1:9100", "0.0.0.0:9100", "[::1]:9100", "localhost:65535", "*:9100"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *argv[] = {"zhost-broker", "--metrics", (char *)good[i], NULL};
        zh_config_t *config = zh_config_new ();
        zh_error_t err;
        assert_int_equal (zh_config_load (config, 3, argv, no_env, &err), 0);
        assert_string_equal (config->metrics, good[i]);
        zh_config_destroy (&config);
    }
    struct {
        const char *addr, *host, *port;
    } split[] = {{"9100", "127.0.0.1", "9100"},
                 {"[::1]:0", "::1", "0"},
                 {"*:7", "0.0.0.0", "7"},
                 {"metrics.example:65535", "metrics.example", "65535"}};
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++) {
        char host[ZH_HOST_MAX + 1], port[8];
        zh_error_t err;
        assert_int_equal (
            zh_hostport_split (split[i].addr, host, sizeof host, port, sizeof port, &err), 0);
        assert_string_equal (host, split[i].host);
        assert_string_equal (port, split[i].port);
    }
    const char *bad[] = {"x", "65536", "::1:9100", ":9100", "host:", "1234567", "9100x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {"zhost-broker", "--metrics", (char *)bad[i], NULL};
        zh_config_t *config = zh_config_new ();
        zh_error_t err;
        assert_int_equal (zh_config_load (config, 3, argv, no_env, &err), -1);
        assert_int_equal (err.exit_status, 2);
        assert_contains (err.reason, "--metrics");
        zh_config_destroy (&config);
    }
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_new_config_has_the_defaults_of_design_md),
        cmocka_unit_test (test_runtime_dir_without_xdg_is_tmp_zhost_uid),
        cmocka_unit_test (test_no_arguments_no_environment_keeps_defaults),
        cmocka_unit_test (test_duration_accepts_each_unit_and_bare_zero),
        cmocka_unit_test (test_duration_refuses_each_invalid_class_with_a_reason),
        cmocka_unit_test (test_duration_format_is_shortest_exact_and_parses_back),
        cmocka_unit_test (test_shell_split_words_quotes_escapes_and_joins),
        cmocka_unit_test (
            test_shell_split_refuses_unterminated_quotes_trailing_backslash_and_empty),
        cmocka_unit_test (test_flags_beat_environment_which_beats_file_which_beats_defaults),
        cmocka_unit_test (test_config_file_named_by_zhost_config_and_flag_wins_over_it),
        cmocka_unit_test (test_highest_source_replaces_whole_lists),
        cmocka_unit_test (test_flag_equals_value_form_and_spawn_splits_at_first_equals),
        cmocka_unit_test (test_sizes_take_bytes_and_binary_suffixes),
        cmocka_unit_test (test_empty_environment_variable_counts_as_unset),
        cmocka_unit_test (test_unknown_flag_missing_value_and_stray_argument_are_refused),
        cmocka_unit_test (test_bad_values_name_the_flag_and_the_value),
        cmocka_unit_test (test_bad_spawns_name_the_flag_and_the_value),
        cmocka_unit_test (test_too_many_list_values_are_refused),
        cmocka_unit_test (test_bad_environment_values_name_the_variable),
        cmocka_unit_test (test_bad_config_files_name_the_file_and_key),
        cmocka_unit_test (test_missing_or_unreadable_config_file_is_an_error_naming_it),
        cmocka_unit_test (test_empty_config_file_sets_nothing),
        cmocka_unit_test (test_help_lists_every_flag_with_its_variable_and_default),
        cmocka_unit_test (test_printed_defaults_load_back_the_same),
        cmocka_unit_test (test_printed_config_loads_back_the_same),
        cmocka_unit_test (test_print_marks_a_value_zpl_cannot_hold),
        cmocka_unit_test (test_cpu_lists_parse_format_and_refuse_bad_forms),
        cmocka_unit_test (test_diff_names_each_change_and_adopt_takes_only_reloadable_ones),
        cmocka_unit_test (test_metrics_addresses_are_checked),
    };
    return cmocka_run_group_tests (tests, setup_tmpdir, remove_tmpdir);
}
