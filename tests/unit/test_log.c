/*  test_log.c — log lines and value quoting (common/zh_log.c).

    Scenarios: a line is "timestamp level event k=v…" with a UTC
    millisecond timestamp close to now; levels below the current one are
    dropped; values that would break splitting on spaces are quoted; long
    lines and values are cut with a "…" marker. Output goes to a memstream.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <regex.h>
#include <time.h>
#include <cmocka.h>

#include "zh_log.h"

#define ELLIPSIS "\xe2\x80\xa6"

typedef struct {
    char *buf;
    size_t size;
    FILE *stream;
} capture_t;

static int
capture_setup (void **state)
{
    capture_t *capture = calloc (1, sizeof *capture);
    capture->stream = open_memstream (&capture->buf, &capture->size);
    if (capture->stream == NULL) return -1;
    zh_log_set_stream (capture->stream);
    zh_log_set_level (ZH_LOG_INFO);
    *state = capture;
    return 0;
}

static int
capture_teardown (void **state)
{
    capture_t *capture = *state;
    zh_log_set_stream (NULL);
    zh_log_set_level (ZH_LOG_INFO);
    fclose (capture->stream);
    free (capture->buf);
    free (capture);
    return 0;
}

//  Everything logged so far (zh_log flushes after each line).
static const char *
captured (void **state)
{
    capture_t *capture = *state;
    fflush (capture->stream);
    return capture->buf ? capture->buf : "";
}

static size_t
count_lines (const char *text)
{
    size_t lines = 0;
    for (; *text; text++)
        lines += *text == '\n';
    return lines;
}

static void
expect_matches (const char *text, const char *pattern)
{
    regex_t regex;
    assert_int_equal (regcomp (&regex, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec (&regex, text, 0, NULL, 0);
    regfree (&regex);
    if (rc != 0) fail_msg ("'%s' does not match /%s/", text, pattern);
}

#define TIMESTAMP "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

//  ---------------------------------------------------------------------
//  Levels

static void
test_level_names_parse_and_print (void **state)
{
    const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = ZH_LOG_DEBUG; i <= ZH_LOG_OFF; i++) {
        zh_log_level_t level = ZH_LOG_OFF;
        assert_int_equal (zh_log_level_parse (names[i], &level), 0);
        assert_int_equal (level, i);
        assert_string_equal (zh_log_level_name (level), names[i]);
    }
    zh_log_level_t level = ZH_LOG_WARN;
    assert_int_equal (zh_log_level_parse ("verbose", &level), -1);
    assert_int_equal (zh_log_level_parse ("INFO", &level), -1);
    assert_int_equal (zh_log_level_parse ("", &level), -1);
    assert_int_equal (zh_log_level_parse (NULL, &level), -1);
    assert_int_equal (level, ZH_LOG_WARN);
    assert_string_equal (zh_log_level_name ((zh_log_level_t)42), "unknown");
}

static void
test_lines_below_the_level_are_dropped (void **state)
{
    zh_log_set_level (ZH_LOG_WARN);
    assert_int_equal (zh_log_get_level (), ZH_LOG_WARN);
    assert_false (zh_log_enabled (ZH_LOG_INFO));
    assert_true (zh_log_enabled (ZH_LOG_ERROR));
    zh_debug ("dropped", "n=%d", 1);
    zh_info ("dropped", "n=%d", 2);
    zh_warn ("kept", "n=%d", 3);
    zh_err ("kept", "n=%d", 4);
    const char *out = captured (state);
    assert_int_equal (count_lines (out), 2);
    assert_null (strstr (out, "dropped"));
    assert_non_null (strstr (out, " warn kept n=3\n"));
    assert_non_null (strstr (out, " error kept n=4\n"));
}

static void
test_debug_level_lets_everything_through (void **state)
{
    zh_log_set_level (ZH_LOG_DEBUG);
    zh_debug ("one", "%s", "a=1");
    zh_info ("two", "%s", "b=2");
    assert_int_equal (count_lines (captured (state)), 2);
    assert_non_null (strstr (captured (state), " debug one a=1\n"));
}

static void
test_off_level_silences_every_line (void **state)
{
    zh_log_set_level (ZH_LOG_OFF);
    zh_debug ("x", "n=1");
    zh_err ("x", "n=1");
    zh_log (ZH_LOG_OFF, "x", "n=1");
    assert_string_equal (captured (state), "");
}

//  ---------------------------------------------------------------------
//  Lines

static void
test_line_is_timestamp_level_event_fields (void **state)
{
    zh_info ("attach", "proc=%s lang=%s", "remote<3xZ9kLmN>", "python");
    const char *out = captured (state);
    expect_matches (out, "^" TIMESTAMP " info attach proc=remote<3xZ9kLmN> lang=python\n$");
}

static void
test_timestamp_is_utc_now (void **state)
{
    //  The log's clock (CLOCK_REALTIME), not time (), which glibc may read
    //  from the coarse clock: a few ms behind, it can name the previous
    //  second at a second's boundary (seen once in CI).
    struct timespec t0, t1;
    clock_gettime (CLOCK_REALTIME, &t0);
    zh_info ("tick", "n=1");
    clock_gettime (CLOCK_REALTIME, &t1);
    time_t before = t0.tv_sec, after = t1.tv_sec;
    struct tm tm = {0};
    int ms;
    assert_int_equal (sscanf (captured (state), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year,
                              &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms),
                      7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t logged = timegm (&tm);
    assert_true (logged >= before && logged <= after);
    assert_in_range (ms, 0, 999);
}

static void
test_line_without_fields_ends_at_the_event (void **state)
{
    zh_info ("started", "%s", "");
    zh_warn ("stopping", "%.0s", "ignored");
    const char *out = captured (state);
    expect_matches (out, "^" TIMESTAMP " info started\n" TIMESTAMP " warn stopping\n$");
}

static void
test_each_call_writes_one_whole_line (void **state)
{
    for (int i = 0; i < 100; i++)
        zh_info ("count", "i=%d", i);
    const char *out = captured (state);
    assert_int_equal (count_lines (out), 100);
    assert_non_null (strstr (out, " info count i=99\n"));
}

static void
test_long_line_is_cut_to_4_kib_with_a_marker (void **state)
{
    char *big = malloc (10000);
    memset (big, 'x', 9999);
    big[9999] = '\0';
    zh_info ("big", "value=%s", big);
    zh_info ("after", "n=1");
    free (big);
    const char *out = captured (state);
    assert_int_equal (count_lines (out), 2);
    const char *end = strchr (out, '\n');
    size_t first = (size_t)(end - out) + 1;
    assert_true (first <= 4096);
    assert_true (first > 4000);
    assert_memory_equal (end - 3, ELLIPSIS, 3);
    assert_non_null (strstr (end + 1, " info after n=1\n"));
}

//  ---------------------------------------------------------------------
//  Quoting

static void
expect_quote (const char *value, size_t len, const char *want)
{
    char buf[128];
    const char *got = zh_log_quote (buf, sizeof buf, value, len);
    assert_ptr_equal (got, buf);
    assert_string_equal (got, want);
}

#define expect_quoted(value, want) expect_quote (value, strlen (value), want)

static void
test_safe_values_are_written_as_they_are (void **state)
{
    expect_quoted ("worker", "worker");
    expect_quoted ("remote<3xZ9kLmN>", "remote<3xZ9kLmN>");
    expect_quoted ("tcp://10.0.0.5:7100", "tcp://10.0.0.5:7100");
    expect_quoted ("a.b:7@ipc://@x", "a.b:7@ipc://@x");
}

static void
test_values_that_break_splitting_are_quoted (void **state)
{
    expect_quoted ("", "\"\"");
    expect_quote (NULL, 5, "\"\"");
    expect_quoted ("hello world", "\"hello world\"");
    expect_quoted ("a=b", "\"a=b\"");
    expect_quoted ("say \"hi\"", "\"say \\\"hi\\\"\"");
    expect_quoted ("c:\\dir", "\"c:\\\\dir\"");
    expect_quoted ("line\nnext", "\"line\\nnext\"");
    expect_quoted ("a\tb\rc", "\"a\\tb\\rc\"");
    expect_quoted ("bell\x07", "\"bell\\x07\"");
    expect_quoted ("del\x7f", "\"del\\x7f\"");
    expect_quoted ("caf\xc3\xa9", "\"caf\\xc3\\xa9\"");
    expect_quote ("a\0b", 3, "\"a\\x00b\"");
}

static void
test_quote_reads_only_len_bytes (void **state)
{
    expect_quote ("worker and more", 6, "worker");
    expect_quote ("worker and more", 9, "\"worker an\"");
}

static void
test_values_too_long_for_the_buffer_are_cut_with_a_marker (void **state)
{
    char buf[12];
    //  Unquoted: 8 bytes of value, "…", NUL.
    zh_log_quote (buf, sizeof buf, "abcdefghijklmnop", 16);
    assert_string_equal (buf, "abcdefgh" ELLIPSIS);
    //  Quoted: quote, 6 bytes, "…", quote, NUL.
    zh_log_quote (buf, sizeof buf, "a b c d e f g", 13);
    assert_string_equal (buf, "\"a b c " ELLIPSIS "\"");
    //  An escape is never split: "\n" needs two bytes, only one is left.
    zh_log_quote (buf, sizeof buf, "abcde\nxyz", 9);
    assert_string_equal (buf, "\"abcde" ELLIPSIS "\"");
    //  A value that fits exactly is not cut.
    zh_log_quote (buf, sizeof buf, "abcdefghijk", 11);
    assert_string_equal (buf, "abcdefghijk");
    //  Too small for anything: still NUL-terminated.
    zh_log_quote (buf, 3, "a b", 3);
    assert_string_equal (buf, "");
    assert_string_equal (zh_log_quote (buf, 0, "x", 1), "");
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_level_names_parse_and_print),
        cmocka_unit_test_setup_teardown (test_lines_below_the_level_are_dropped, capture_setup,
                                         capture_teardown),
        cmocka_unit_test_setup_teardown (test_debug_level_lets_everything_through, capture_setup,
                                         capture_teardown),
        cmocka_unit_test_setup_teardown (test_off_level_silences_every_line, capture_setup,
                                         capture_teardown),
        cmocka_unit_test_setup_teardown (test_line_is_timestamp_level_event_fields, capture_setup,
                                         capture_teardown),
        cmocka_unit_test_setup_teardown (test_timestamp_is_utc_now, capture_setup,
                                         capture_teardown),
        cmocka_unit_test_setup_teardown (test_line_without_fields_ends_at_the_event, capture_setup,
                                         capture_teardown),
        cmocka_unit_test_setup_teardown (test_each_call_writes_one_whole_line, capture_setup,
                                         capture_teardown),
        cmocka_unit_test_setup_teardown (test_long_line_is_cut_to_4_kib_with_a_marker,
                                         capture_setup, capture_teardown),
        cmocka_unit_test (test_safe_values_are_written_as_they_are),
        cmocka_unit_test (test_values_that_break_splitting_are_quoted),
        cmocka_unit_test (test_quote_reads_only_len_bytes),
        cmocka_unit_test (test_values_too_long_for_the_buffer_are_cut_with_a_marker),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
