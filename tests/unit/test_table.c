/*  test_table.c — the broker's byte-keyed hash table (broker/zh_table.c).

    Scenarios: binary routing ids with NUL bytes are distinct keys; a
    proc id looked up straight from a head (not NUL-terminated) finds the
    route inserted from a C string; delete removes exactly one key;
    thousands of keys survive growth of the table.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "zh_table.h"

static void
test_binary_routing_ids_with_nul_bytes_are_distinct (void **state)
{
    zh_table_t *table = zh_table_new ();
    uint8_t a[16] = {1, 0, 0, 0}, b[16] = {1, 0, 0, 1};
    int x = 1, y = 2;
    assert_int_equal (zh_table_insert (table, a, sizeof a, &x), 0);
    assert_int_equal (zh_table_insert (table, b, sizeof b, &y), 0);
    assert_ptr_equal (zh_table_lookup (table, a, sizeof a), &x);
    assert_ptr_equal (zh_table_lookup (table, b, sizeof b), &y);
    //  A prefix of a key is another key.
    assert_null (zh_table_lookup (table, a, 4));
    assert_int_equal (zh_table_insert (table, a, sizeof a, &y), -1);
    assert_int_equal (zh_table_size (table), 2);
    zh_table_destroy (&table);
    assert_null (table);
}

static void
test_proc_id_from_a_head_finds_the_route (void **state)
{
    zh_table_t *table = zh_table_new ();
    int route = 7;
    zh_table_insert (table, "worker<3xZ9>", strlen ("worker<3xZ9>"), &route);
    const char *head = "echo.worker<3xZ9>:1@tcp://h:1";
    assert_ptr_equal (zh_table_lookup (table, head + 5, 12), &route);
    assert_null (zh_table_lookup (table, head + 5, 11));
    zh_table_delete (table, head + 5, 12);
    assert_null (zh_table_lookup (table, "worker<3xZ9>", 12));
    assert_int_equal (zh_table_size (table), 0);
    zh_table_destroy (&table);
}

static void
test_thousands_of_keys_and_iteration (void **state)
{
    zh_table_t *table = zh_table_new ();
    static int items[5000];
    char key[32];
    for (int i = 0; i < 5000; i++) {
        items[i] = i;
        snprintf (key, sizeof key, "p%d", i);
        assert_int_equal (zh_table_insert (table, key, strlen (key), &items[i]), 0);
    }
    long sum = 0, n = 0;
    for (int *it = zh_table_first (table); it; it = zh_table_next (table)) {
        sum += *it;
        n++;
    }
    assert_int_equal (n, 5000);
    assert_int_equal (sum, 5000L * 4999 / 2);
    for (int i = 0; i < 5000; i += 2) {
        snprintf (key, sizeof key, "p%d", i);
        zh_table_delete (table, key, strlen (key));
    }
    assert_int_equal (zh_table_size (table), 2500);
    snprintf (key, sizeof key, "p%d", 4999);
    assert_ptr_equal (zh_table_lookup (table, key, strlen (key)), &items[4999]);
    zh_table_destroy (&table);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_binary_routing_ids_with_nul_bytes_are_distinct),
        cmocka_unit_test (test_proc_id_from_a_head_finds_the_route),
        cmocka_unit_test (test_thousands_of_keys_and_iteration),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
