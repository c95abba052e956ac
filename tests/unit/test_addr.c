/*  test_addr.c — addresses of ZHP/1 §2 (common/zh_addr.c).

    Scenarios: every address form prints back to the bytes it was parsed
    from (ADDR-1); uid58 known vectors; each class of bad input is refused
    with code 400, the offset where it went wrong and a reason that names
    it; a seeded random walk over thousands of valid addresses and single
    byte mutations of them.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "zh_addr.h"

//  ---------------------------------------------------------------------
//  Helpers

//  Parse from a heap copy of exactly len bytes (no NUL after it), so a
//  read past the end shows under ASan.
static int
parse_exact (zh_addr_t *addr, const char *text, size_t len, zh_error_t *err, char **copy_p)
{
    char *copy = malloc (len ? len : 1);
    assert_non_null (copy);
    memcpy (copy, text, len);
    *copy_p = copy;
    return zh_addr_parse (addr, copy, len, err);
}

//  Parse text, expect success, and expect zh_addr_format to give back
//  the same bytes. The address keeps pointing into a static copy.
static zh_addr_t
expect_round_trip (const char *text)
{
    static char keep[ZH_ADDR_MAX + 1];
    size_t len = strlen (text);
    assert_true (len <= ZH_ADDR_MAX);
    memcpy (keep, text, len + 1);
    zh_addr_t addr;
    zh_error_t err;
    zh_error_clear (&err);
    int rc = zh_addr_parse (&addr, keep, len, &err);
    if (rc != 0) fail_msg ("'%s' refused: %s (at %zu)", text, err.reason, err.offset);
    char out[ZH_ADDR_MAX + 1];
    int n = zh_addr_format (&addr, out, sizeof out);
    assert_int_equal (n, (int)len);
    assert_string_equal (out, text);
    assert_true (addr.text.ptr == keep && addr.text.len == len);
    return addr;
}

//  Expect zh_addr_parse to refuse text (len bytes) with code 400 at
//  offset, with part somewhere in the reason.
static void
check_refused (const char *text, size_t len, size_t offset, const char *part, int line)
{
    zh_addr_t addr;
    zh_error_t err;
    zh_error_clear (&err);
    char *copy;
    int rc = parse_exact (&addr, text, len, &err, &copy);
    free (copy);
    if (rc != -1) fail_msg ("line %d: '%.*s' was accepted", line, (int)len, text);
    if (err.code != 400 || err.offset != offset || strstr (err.reason, part) == NULL)
        fail_msg ("line %d: '%.*s' refused with %d at %zu \"%s\"; expected 400 at %zu \"…%s…\"",
                  line, (int)len, text, err.code, err.offset, err.reason, offset, part);
}

#define expect_refused(text, offset, part)                                                         \
    check_refused (text, strlen (text), offset, part, __LINE__)

static void
expect_id (const zh_id_t *id, const char *label, bool has_uid, uint64_t uid)
{
    assert_true (zh_span_eq (id->label, label));
    assert_int_equal (id->has_uid, has_uid);
    assert_true (id->uid == uid);
}

//  ---------------------------------------------------------------------
//  Round trips of every form

static void
test_proc_address_with_label_only_round_trips (void **state)
{
    zh_addr_t addr = expect_round_trip ("worker@tcp://10.0.0.5:7100");
    assert_int_equal (addr.kind, ZH_ADDR_PROC);
    expect_id (&addr.proc, "worker", false, 0);
    assert_true (zh_span_eq (addr.proc.text, "worker"));
    assert_true (zh_span_eq (addr.endpoint, "tcp://10.0.0.5:7100"));
}

static void
test_proc_address_with_label_and_uid_round_trips (void **state)
{
    zh_addr_t addr = expect_round_trip ("worker<3xZ9kLmN>@ipc:///run/user/1000/zhost/backend");
    assert_int_equal (addr.kind, ZH_ADDR_PROC);
    uint64_t uid;
    assert_int_equal (zh_uid58_decode ("3xZ9kLmN", 8, &uid, NULL), 0);
    expect_id (&addr.proc, "worker", true, uid);
    assert_true (zh_span_eq (addr.proc.text, "worker<3xZ9kLmN>"));
    assert_true (zh_span_eq (addr.endpoint, "ipc:///run/user/1000/zhost/backend"));
}

static void
test_proc_address_with_uid_only_round_trips (void **state)
{
    zh_addr_t addr = expect_round_trip ("<21>@inproc://zhost-backend-0");
    expect_id (&addr.proc, "", true, 58);
    assert_true (zh_span_eq (addr.proc.text, "<21>"));
    addr = expect_round_trip ("<1>@inproc://x");
    expect_id (&addr.proc, "", true, 0);
}

static void
test_actor_address_names_actor_then_proc (void **state)
{
    zh_addr_t addr = expect_round_trip ("echo.worker@tcp://10.0.0.5:7100");
    assert_int_equal (addr.kind, ZH_ADDR_ACTOR);
    expect_id (&addr.actor, "echo", false, 0);
    expect_id (&addr.proc, "worker", false, 0);

    addr = expect_round_trip ("echo<Z>.<JPwcyDCgEup>@tcp://host-a:1");
    expect_id (&addr.actor, "echo", true, 57);
    expect_id (&addr.proc, "", true, UINT64_MAX);
}

static void
test_port_address_carries_a_u64_port (void **state)
{
    zh_addr_t addr = expect_round_trip ("echo.worker:7@tcp://10.0.0.5:7100");
    assert_int_equal (addr.kind, ZH_ADDR_PORT);
    expect_id (&addr.actor, "echo", false, 0);
    expect_id (&addr.proc, "worker", false, 0);
    assert_true (addr.port == 7);

    addr = expect_round_trip ("a.b:0@tcp://h:65535");
    assert_true (addr.port == 0);
    addr = expect_round_trip ("a<2>.remote<3xZ9kLmN>:18446744073709551615@inproc://p");
    assert_true (addr.port == UINT64_MAX);
}

static void
test_endpoints_of_every_scheme_round_trip (void **state)
{
    expect_round_trip ("w@tcp://127.0.0.1:1");
    expect_round_trip ("w@tcp://host-a:7100");
    expect_round_trip ("w@tcp://[::1]:7100");
    expect_round_trip ("w@tcp://[fe80::1%eth0]:65535");
    expect_round_trip ("w@ipc:///tmp/zhost-1000/backend");
    expect_round_trip ("w@ipc://relative path with spaces");
    expect_round_trip ("w@inproc://zhost-backend-3");
}

static void
test_address_splits_at_first_at_sign (void **state)
{
    //  ADDR-2: an abstract ipc endpoint holds '@', even twice.
    zh_addr_t addr = expect_round_trip ("w<2>@ipc://@zhost@abstract");
    expect_id (&addr.proc, "w", true, 1);
    assert_true (zh_span_eq (addr.endpoint, "ipc://@zhost@abstract"));
    addr = expect_round_trip ("e.w:3@ipc://@x");
    assert_true (zh_span_eq (addr.endpoint, "ipc://@x"));
}

static void
test_labels_at_the_edges_of_the_rules (void **state)
{
    expect_round_trip ("a@inproc://x");
    expect_round_trip ("a1@inproc://x");
    expect_round_trip ("a_b-c9@inproc://x");
    char text[128];
    memset (text, 'a', 63);
    strcpy (text + 63, "@inproc://x");
    expect_round_trip (text);
}

static void
test_parse_reads_only_len_bytes (void **state)
{
    //  The broker hands frames that are not NUL-terminated.
    const char *frame = "w@inproc://abcDEF";
    zh_addr_t addr;
    assert_int_equal (zh_addr_parse (&addr, frame, 14, NULL), 0);
    assert_true (zh_span_eq (addr.endpoint, "inproc://abc"));
    assert_int_equal (zh_addr_parse (&addr, frame, 1, NULL), -1);
}

static void
test_format_functions_build_what_parse_reads (void **state)
{
    char id[ZH_ID_MAX + 1], actor[ZH_ID_MAX + 1], buf[ZH_ADDR_MAX + 1];
    assert_int_equal (zh_id_format (id, sizeof id, "worker", true, 58), 10);
    assert_string_equal (id, "worker<21>");
    assert_int_equal (zh_id_format (actor, sizeof actor, NULL, true, 0), 3);
    assert_string_equal (actor, "<1>");
    assert_int_equal (zh_id_format (actor, sizeof actor, "echo", false, 0), 4);
    assert_string_equal (actor, "echo");
    assert_int_equal (zh_id_format (buf, sizeof buf, NULL, false, 0), -1);

    assert_int_equal (zh_proc_addr_format (buf, sizeof buf, id, "tcp://h:1"), 20);
    assert_string_equal (buf, "worker<21>@tcp://h:1");
    zh_actor_addr_format (buf, sizeof buf, actor, id, "tcp://h:1");
    assert_string_equal (buf, "echo.worker<21>@tcp://h:1");
    zh_port_addr_format (buf, sizeof buf, actor, id, 42, "tcp://h:1");
    assert_string_equal (buf, "echo.worker<21>:42@tcp://h:1");
    expect_round_trip (buf);
}

static void
test_format_refuses_a_buffer_too_small (void **state)
{
    char buf[8];
    assert_int_equal (zh_proc_addr_format (buf, sizeof buf, "worker", "tcp://h:1"), -1);
    assert_int_equal (zh_id_format (buf, 4, "abcd", false, 0), -1);
    assert_int_equal (zh_id_format (buf, 5, "abcd", false, 0), 4);

    zh_addr_t addr;
    assert_int_equal (zh_addr_parse (&addr, "w@inproc://x", 12, NULL), 0);
    assert_int_equal (zh_addr_format (&addr, buf, 12), -1);
    char fits[13];
    assert_int_equal (zh_addr_format (&addr, fits, sizeof fits), 12);
}

//  ---------------------------------------------------------------------
//  uid58

//  With docs/protocol.md's alphabet (lowercase before uppercase, as Flickr's
//  base58) u64 max is "JPwcyDCgEup"; "jpXCZedGfVQ" is its spelling in
//  Bitcoin's alphabet, which zhost does not use.
static void
test_uid58_known_vectors (void **state)
{
    struct {
        uint64_t value;
        const char *text;
    } vectors[] = {
        {0, "1"},
        {1, "2"},
        {57, "Z"},
        {58, "21"},
        {3363, "ZZ"},
        {3364, "211"},
        {UINT64_MAX, "JPwcyDCgEup"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char buf[ZH_UID58_MAX + 1];
        size_t n = zh_uid58_encode (vectors[i].value, buf);
        assert_int_equal (n, strlen (vectors[i].text));
        assert_string_equal (buf, vectors[i].text);
        uint64_t back = 1234;
        assert_int_equal (zh_uid58_decode (vectors[i].text, n, &back, NULL), 0);
        assert_true (back == vectors[i].value);
    }
    assert_int_equal (strlen (zh_uid58_alphabet), 58);
}

static uint64_t
random_u64 (void)
{
    uint64_t value = 0;
    for (int i = 0; i < 5; i++)
        value = (value << 15) ^ (uint64_t)(rand () & 0x7fff);
    //  Bias toward short values now and then.
    int shift = rand () % 4 == 0 ? rand () % 64 : 0;
    return value >> shift;
}

static void
test_uid58_round_trips_many_values (void **state)
{
    srand (42);
    for (int i = 0; i < 100000; i++) {
        uint64_t value = i < 1000   ? (uint64_t)i
                         : i < 2000 ? UINT64_MAX - (uint64_t)(i - 1000)
                                    : random_u64 ();
        char buf[ZH_UID58_MAX + 1];
        size_t n = zh_uid58_encode (value, buf);
        assert_true (n >= 1 && n <= ZH_UID58_MAX);
        assert_true (n == 1 || buf[0] != '1');
        uint64_t back;
        zh_error_t err;
        if (zh_uid58_decode (buf, n, &back, &err) != 0)
            fail_msg ("'%s' (%llu) refused: %s", buf, (unsigned long long)value, err.reason);
        assert_true (back == value);
    }
}

static void
check_uid58_refused (const char *text, size_t offset, const char *part, int line)
{
    uint64_t value;
    zh_error_t err;
    zh_error_clear (&err);
    int rc = zh_uid58_decode (text, strlen (text), &value, &err);
    if (rc != -1 || err.code != 400 || err.offset != offset || !strstr (err.reason, part))
        fail_msg ("line %d: uid58 '%s' gave %d, %d at %zu \"%s\"", line, text, rc, err.code,
                  err.offset, err.reason);
}

#define expect_uid58_refused(text, offset, part) check_uid58_refused (text, offset, part, __LINE__)

static void
test_uid58_decode_refuses_bad_digits_overflow_and_leading_one (void **state)
{
    expect_uid58_refused ("", 0, "uid58: empty");
    expect_uid58_refused ("0", 0, "'0' at 0 is not a base58 digit");
    expect_uid58_refused ("2O", 1, "'O' at 1 is not a base58 digit");
    expect_uid58_refused ("2I", 1, "'I' at 1");
    expect_uid58_refused ("2l", 1, "'l' at 1");
    expect_uid58_refused ("JPwcyDCgEuq", 0, "uid58: value beyond u64");
    expect_uid58_refused ("222222222222", 0, "uid58: value beyond u64");
    expect_uid58_refused ("11", 0, "leading '1'");
    expect_uid58_refused ("1Z", 0, "leading '1'");
}

//  ---------------------------------------------------------------------
//  Refusals: each class of bad address, with where and why

static void
test_empty_address_is_refused (void **state)
{
    expect_refused ("", 0, "address: empty");
    zh_addr_t addr;
    zh_error_t err;
    assert_int_equal (zh_addr_parse (&addr, NULL, 0, &err), -1);
    assert_int_equal (err.code, 400);
}

static void
test_address_without_at_sign_is_refused (void **state)
{
    expect_refused ("worker", 6, "address: missing '@'");
    expect_refused ("echo.worker:7", 13, "address: missing '@'");
    expect_refused ("w<2>", 4, "address: missing '@'");
}

static void
test_empty_endpoint_is_refused (void **state)
{
    expect_refused ("worker@", 7, "endpoint: empty at 7");
    expect_refused ("worker@tcp://", 13, "endpoint: empty host:port");
    expect_refused ("worker@ipc://", 13, "endpoint: empty name");
    expect_refused ("worker@inproc://", 16, "endpoint: empty name");
}

static void
test_unknown_endpoint_scheme_is_refused (void **state)
{
    expect_refused ("worker@udp://h:1", 7, "endpoint: unknown scheme");
    expect_refused ("worker@TCP://h:1", 7, "endpoint: unknown scheme");
    expect_refused ("worker@tcp:/h:1", 7, "endpoint: unknown scheme");
    expect_refused ("worker@h:1", 7, "endpoint: unknown scheme");
}

static void
test_tcp_endpoint_needs_host_and_port_in_range (void **state)
{
    expect_refused ("w@tcp://host", 12, "tcp needs host:port");
    expect_refused ("w@tcp://host:", 13, "empty tcp port");
    expect_refused ("w@tcp://:7100", 8, "empty tcp host");
    expect_refused ("w@tcp://host:0", 13, "'0' at 13 is not in 1..65535");
    expect_refused ("w@tcp://host:70000", 13, "'70000' at 13 is not in 1..65535");
    expect_refused ("w@tcp://host:65536", 13, "not in 1..65535");
    expect_refused ("w@tcp://host:99999999999999999999999", 13, "not in 1..65535");
    expect_refused ("w@tcp://host:71a", 15, "'a' at 15 is not a decimal digit");
    expect_refused ("w@tcp://host:*", 13, "not a decimal digit");
    expect_refused ("w@tcp://host:07100", 13, "leading zero");
    expect_refused ("w@tcp://::1:7100", 8, "IPv6 needs [brackets]");
    expect_refused ("w@tcp://[::1:7100", 8, "'[' at 8 needs ']'");
    expect_refused ("w@tcp://[]:7100", 8, "empty '[]' host");
}

static void
test_endpoint_with_control_bytes_is_refused (void **state)
{
    expect_refused ("w@ipc://a\nb", 9, "control byte '\\x0a' at 9");
    check_refused ("w@inproc://a\0b", 14, 12, "control byte '\\x00' at 12", __LINE__);
}

static void
test_endpoint_longer_than_its_bound_is_refused (void **state)
{
    char text[ZH_ADDR_MAX + 1];
    strcpy (text, "w@ipc://");
    memset (text + 8, 'p', ZH_ENDPOINT_MAX - 5);
    text[2 + ZH_ENDPOINT_MAX + 1] = '\0';
    assert_int_equal (strlen (text), 2 + ZH_ENDPOINT_MAX + 1);
    expect_refused (text, 2, "endpoint: 1001 bytes at 2, more than 1000");
    text[2 + ZH_ENDPOINT_MAX] = '\0';
    expect_round_trip (text);
}

static void
test_label_must_start_with_a_letter (void **state)
{
    expect_refused ("1worker@inproc://x", 0, "label: '1' at 0 must be a letter");
    expect_refused ("-worker@inproc://x", 0, "label: '-' at 0 must be a letter");
    expect_refused ("_w@inproc://x", 0, "must be a letter");
    expect_refused ("echo.9w@inproc://x", 5, "label: '9' at 5 must be a letter");
}

static void
test_label_must_end_with_a_letter_or_digit (void **state)
{
    expect_refused ("worker-@inproc://x", 6, "label: '-' at 6 must be a letter or digit");
    expect_refused ("worker_<2>@inproc://x", 6, "'_' at 6 must be a letter or digit");
    expect_refused ("e-.w@inproc://x", 1, "must be a letter or digit");
}

static void
test_label_refuses_uppercase_and_other_bytes (void **state)
{
    expect_refused ("woRker@inproc://x", 2, "label: 'R' at 2 is not one of [a-z0-9_-]");
    expect_refused ("wo rker@inproc://x", 2, "label: '\\x20' at 2 is not one of");
    expect_refused ("w/x@inproc://x", 1, "'/' at 1 is not one of");
    expect_refused ("w>@inproc://x", 1, "'>' at 1 is not one of");
    check_refused ("w\xc3\xa9@inproc://x", 14, 1, "'\\xc3' at 1 is not one of", __LINE__);
    check_refused ("w\0@inproc://x", 13, 1, "'\\x00' at 1 is not one of", __LINE__);
}

static void
test_label_of_64_bytes_is_refused (void **state)
{
    char text[128];
    memset (text, 'a', 64);
    strcpy (text + 64, "@inproc://x");
    expect_refused (text, 63, "label: 64 bytes at 0, more than 63");
    memset (text, 'a', 100);
    strcpy (text + 100, "<2>@inproc://x");
    expect_refused (text, 63, "label: 100 bytes at 0");
}

static void
test_uid_with_letters_outside_base58_is_refused (void **state)
{
    expect_refused ("w<30>@inproc://x", 3, "uid58: '0' at 3 is not a base58 digit");
    expect_refused ("w<O>@inproc://x", 2, "uid58: 'O' at 2 is not a base58 digit");
    expect_refused ("w<3I>@inproc://x", 3, "uid58: 'I' at 3");
    expect_refused ("w<l>@inproc://x", 2, "uid58: 'l' at 2");
    expect_refused ("w<2.3>@inproc://x", 3, "uid58: '.' at 3");
}

static void
test_uid_beyond_u64_is_refused (void **state)
{
    expect_refused ("w<JPwcyDCgEuq>@inproc://x", 2, "uid58: value beyond u64 at 2");
    expect_refused ("<zzzzzzzzzzzz>@inproc://x", 1, "uid58: value beyond u64 at 1");
    expect_round_trip ("w<JPwcyDCgEup>@inproc://x");
}

static void
test_uid_with_leading_one_is_not_canonical (void **state)
{
    //  ADDR-1: "1" is zero; "12" would be a second spelling of "2".
    expect_refused ("w<12>@inproc://x", 2, "uid58: leading '1' at 2");
    expect_refused ("w.<11>@inproc://x", 3, "leading '1'");
    expect_round_trip ("w<1>@inproc://x");
    expect_round_trip ("w<21>@inproc://x");
}

static void
test_unclosed_or_empty_uid_is_refused (void **state)
{
    expect_refused ("w<3xZ@inproc://x", 1, "id: unclosed '<' at 1");
    expect_refused ("w<3xZ", 1, "id: unclosed '<' at 1");
    expect_refused ("w<>@inproc://x", 1, "uid58: empty '<>' at 1");
    expect_refused ("<>.w@inproc://x", 0, "uid58: empty '<>' at 0");
}

static void
test_id_parts_must_be_in_grammar_order (void **state)
{
    expect_refused ("a.b.c@inproc://x", 3, "address: unexpected '.' at 3");
    expect_refused ("a..b@inproc://x", 2, "id: empty at 2");
    expect_refused (".b@inproc://x", 0, "id: empty at 0");
    expect_refused ("@inproc://x", 0, "id: empty at 0");
    expect_refused ("a.@inproc://x", 2, "id: empty at 2");
    expect_refused ("a:7@inproc://x", 1, "address: unexpected ':' at 1");
    expect_refused ("a<2>b@inproc://x", 4, "address: unexpected 'b' at 4");
    expect_refused ("a<2><3>@inproc://x", 4, "unexpected '<' at 4");
    expect_refused ("a.b:7:8@inproc://x", 5, "port: ':' at 5 is not a decimal digit");
}

static void
test_port_must_be_a_canonical_u64 (void **state)
{
    expect_refused ("a.b:07@inproc://x", 4, "port: leading zero at 4");
    expect_refused ("a.b:00@inproc://x", 4, "port: leading zero at 4");
    expect_refused ("a.b:18446744073709551616@inproc://x", 4, "port: value beyond u64 at 4");
    expect_refused ("a.b:99999999999999999999@inproc://x", 4, "port: value beyond u64");
    expect_refused ("a.b:7x@inproc://x", 5, "port: 'x' at 5 is not a decimal digit");
    expect_refused ("a.b:-1@inproc://x", 4, "port: '-' at 4");
    expect_refused ("a.b:@inproc://x", 4, "port: empty at 4");
}

static void
test_address_over_1024_bytes_is_refused (void **state)
{
    //  The longest address: two 76-byte ids, a 20-digit port, a long path.
    char actor[ZH_ID_MAX + 1], proc[ZH_ID_MAX + 1], endpoint[ZH_ENDPOINT_MAX + 1];
    char label[ZH_LABEL_MAX + 1];
    memset (label, 'a', ZH_LABEL_MAX);
    label[ZH_LABEL_MAX] = '\0';
    assert_int_equal (zh_id_format (actor, sizeof actor, label, true, UINT64_MAX), ZH_ID_MAX);
    assert_int_equal (zh_id_format (proc, sizeof proc, label, true, UINT64_MAX), ZH_ID_MAX);
    size_t fixed = 2 * ZH_ID_MAX + 1 + 1 + 20 + 1; //  ids, '.', ':', port, '@'
    size_t path = ZH_ADDR_MAX - fixed - 6;
    strcpy (endpoint, "ipc://");
    memset (endpoint + 6, 'p', path);
    endpoint[6 + path] = '\0';

    char text[ZH_ADDR_MAX + 2];
    int n = zh_port_addr_format (text, sizeof text, actor, proc, UINT64_MAX, endpoint);
    assert_int_equal (n, ZH_ADDR_MAX);
    expect_round_trip (text);

    strcat (endpoint, "p");
    n = zh_port_addr_format (text, sizeof text, actor, proc, UINT64_MAX, endpoint);
    assert_int_equal (n, ZH_ADDR_MAX + 1);
    expect_refused (text, ZH_ADDR_MAX, "address: 1025 bytes, more than 1024");
}

static void
test_parse_kind_refuses_the_wrong_kind (void **state)
{
    zh_addr_t addr;
    zh_error_t err;
    const char *proc = "w@inproc://x", *port = "e.w:1@inproc://x";
    assert_int_equal (zh_addr_parse_kind (&addr, ZH_ADDR_PORT, port, strlen (port), &err), 0);
    assert_int_equal (addr.kind, ZH_ADDR_PORT);

    assert_int_equal (zh_addr_parse_kind (&addr, ZH_ADDR_PORT, proc, strlen (proc), &err), -1);
    assert_int_equal (err.code, 400);
    assert_int_equal (err.offset, 0);
    assert_string_equal (err.reason, "address: a proc address where a port address is needed");

    assert_int_equal (zh_addr_parse_kind (&addr, ZH_ADDR_ACTOR, port, strlen (port), &err), -1);
    assert_string_equal (err.reason, "address: a port address where an actor address is needed");

    //  A malformed address keeps its own reason.
    assert_int_equal (zh_addr_parse_kind (&addr, ZH_ADDR_PROC, "w", 1, &err), -1);
    assert_non_null (strstr (err.reason, "missing '@'"));
}

//  ---------------------------------------------------------------------
//  Single parts: label, id, endpoint

static void
test_label_check_alone (void **state)
{
    zh_error_t err;
    assert_int_equal (zh_label_check ("host_agent", 10, &err), 0);
    assert_int_equal (zh_label_check ("", 0, &err), -1);
    assert_string_equal (err.reason, "label: empty at 0");
    assert_int_equal (zh_label_check ("ab.c", 4, &err), -1);
    assert_int_equal (err.offset, 2);
    assert_int_equal (zh_label_check ("a<2>", 4, &err), -1);
    assert_int_equal (err.offset, 1);
    assert_int_equal (zh_label_check ("Service", 7, &err), -1);
    assert_int_equal (err.code, 400);
    assert_int_equal (err.offset, 0);
}

static void
test_id_parse_alone (void **state)
{
    zh_id_t id;
    zh_error_t err;
    assert_int_equal (zh_id_parse (&id, "remote<3xZ9kLmN>", 16, &err), 0);
    assert_true (zh_span_eq (id.label, "remote"));
    assert_true (id.has_uid);
    assert_true (zh_span_eq (id.text, "remote<3xZ9kLmN>"));

    assert_int_equal (zh_id_parse (&id, "a.b", 3, &err), -1);
    assert_int_equal (err.code, 400);
    assert_int_equal (err.offset, 1);
    assert_string_equal (err.reason, "id: unexpected '.' at 1 (want end of id)");
    assert_int_equal (zh_id_parse (&id, "a<2>x", 5, &err), -1);
    assert_int_equal (err.offset, 4);
    assert_int_equal (zh_id_parse (&id, "", 0, &err), -1);
    assert_string_equal (err.reason, "id: empty at 0");
    assert_int_equal (zh_id_parse (&id, "w@x", 3, &err), -1);
    assert_int_equal (err.offset, 1);
}

static void
test_endpoint_check_alone (void **state)
{
    zh_error_t err;
    assert_int_equal (zh_endpoint_check ("tcp://h:1", 9, &err), 0);
    assert_int_equal (zh_endpoint_check ("ipc://@a@b", 10, &err), 0);
    assert_int_equal (zh_endpoint_check ("tcp://h:0", 9, &err), -1);
    assert_int_equal (err.code, 400);
    assert_int_equal (err.offset, 8);
    assert_int_equal (zh_endpoint_check ("", 0, &err), -1);
    assert_string_equal (err.reason, "endpoint: empty at 0");
}

//  ---------------------------------------------------------------------
//  Comparison

static zh_addr_t
parsed (const char *text)
{
    zh_addr_t addr;
    zh_error_t err;
    if (zh_addr_parse (&addr, text, strlen (text), &err)) fail_msg ("'%s': %s", text, err.reason);
    return addr;
}

static void
test_same_proc_ignores_actor_and_port (void **state)
{
    zh_addr_t a = parsed ("w<2>@tcp://h:1"), b = parsed ("echo.w<2>:3@tcp://h:1"),
              c = parsed ("w<2>@tcp://h:2"), d = parsed ("w<3>@tcp://h:1"),
              e = parsed ("w@tcp://h:1");
    assert_true (zh_addr_same_proc (&a, &b));
    assert_false (zh_addr_same_proc (&a, &c));
    assert_false (zh_addr_same_proc (&a, &d));
    assert_false (zh_addr_same_proc (&a, &e));
}

static void
test_equal_compares_every_part (void **state)
{
    zh_addr_t a = parsed ("e.w:3@tcp://h:1"), a2 = parsed ("e.w:3@tcp://h:1");
    zh_addr_t port = parsed ("e.w:4@tcp://h:1"), actor = parsed ("f.w:3@tcp://h:1"),
              kind = parsed ("e.w@tcp://h:1"), proc = parsed ("w@tcp://h:1");
    assert_true (zh_addr_equal (&a, &a2));
    assert_false (zh_addr_equal (&a, &port));
    assert_false (zh_addr_equal (&a, &actor));
    assert_false (zh_addr_equal (&a, &kind));
    assert_false (zh_addr_equal (&kind, &proc));
    assert_true (zh_span_eq (a.endpoint, "tcp://h:1"));
    assert_false (zh_span_eq (a.endpoint, "tcp://h:12"));
    assert_false (zh_span_eq (a.endpoint, "tcp://h:"));
}

//  ---------------------------------------------------------------------
//  Seeded random walk

typedef struct {
    char label[ZH_LABEL_MAX + 1];
    bool has_uid;
    uint64_t uid;
} rand_id_t;

static const char label_first[] = "abcdefghijklmnopqrstuvwxyz";
static const char label_middle[] = "abcdefghijklmnopqrstuvwxyz0123456789_-";
static const char label_last[] = "abcdefghijklmnopqrstuvwxyz0123456789";

static void
random_label (char *label)
{
    size_t len = rand () % 4 == 0 ? 1 + rand () % ZH_LABEL_MAX : 1 + rand () % 10;
    label[0] = label_first[rand () % 26];
    for (size_t i = 1; i < len; i++)
        label[i] = label_middle[rand () % (sizeof label_middle - 1)];
    if (len > 1) label[len - 1] = label_last[rand () % (sizeof label_last - 1)];
    label[len] = '\0';
}

static void
random_id (rand_id_t *id, char *text, size_t size)
{
    int form = rand () % 3; //  label, label<uid>, <uid>
    id->label[0] = '\0';
    if (form != 2) random_label (id->label);
    id->has_uid = form != 0;
    id->uid = id->has_uid ? random_u64 () : 0;
    assert_true (zh_id_format (text, size, form == 2 ? NULL : id->label, id->has_uid, id->uid) > 0);
}

static void
random_endpoint (char *text, size_t size)
{
    static const char path_bytes[] = "abcXYZ019/._-@:~ ";
    char name[48];
    size_t len = 1 + rand () % (sizeof name - 1);
    for (size_t i = 0; i < len; i++)
        name[i] = path_bytes[rand () % (sizeof path_bytes - 1)];
    name[len] = '\0';
    switch (rand () % 4) {
    case 0: {
        char host[ZH_LABEL_MAX + 1];
        random_label (host);
        snprintf (text, size, "tcp://%s:%d", host, 1 + rand () % 65535);
        break;
    }
    case 1:
        snprintf (text, size, "tcp://[::%x]:%d", rand () % 0xffff, 1 + rand () % 65535);
        break;
    case 2:
        snprintf (text, size, "ipc://%s", name);
        break;
    default:
        snprintf (text, size, "inproc://%s", name);
        break;
    }
}

static void
expect_id_fields (const zh_id_t *got, const rand_id_t *want)
{
    assert_true (zh_span_eq (got->label, want->label));
    assert_int_equal (got->has_uid, want->has_uid);
    assert_true (got->uid == want->uid);
}

//  One single-byte mutation of text: must parse (and then print back to
//  the same bytes) or be refused with 400 at an offset inside the text.
static void
mutate_and_parse (const char *text, size_t len)
{
    char *copy = malloc (len);
    assert_non_null (copy);
    memcpy (copy, text, len);
    copy[rand () % len] = (char)(rand () % 256);
    zh_addr_t addr;
    zh_error_t err;
    zh_error_clear (&err);
    if (zh_addr_parse (&addr, copy, len, &err) == 0) {
        char out[ZH_ADDR_MAX + 1];
        assert_int_equal (zh_addr_format (&addr, out, sizeof out), (int)len);
        assert_memory_equal (out, copy, len);
    } else {
        assert_int_equal (err.code, 400);
        assert_true (err.offset <= len);
        assert_true (strlen (err.reason) > 0);
    }
    free (copy);
}

static void
test_random_valid_addresses_round_trip_and_mutations_never_crash (void **state)
{
    srand (42);
    int kinds[4] = {0};
    for (int round = 0; round < 5000; round++) {
        rand_id_t actor, proc;
        char actor_text[ZH_ID_MAX + 1], proc_text[ZH_ID_MAX + 1];
        char endpoint[128], text[ZH_ADDR_MAX + 1];
        random_id (&actor, actor_text, sizeof actor_text);
        random_id (&proc, proc_text, sizeof proc_text);
        random_endpoint (endpoint, sizeof endpoint);
        uint64_t port = random_u64 ();
        zh_addr_kind_t kind = (zh_addr_kind_t)(1 + rand () % 3);
        int n =
            kind == ZH_ADDR_PROC ? zh_proc_addr_format (text, sizeof text, proc_text, endpoint)
            : kind == ZH_ADDR_ACTOR
                ? zh_actor_addr_format (text, sizeof text, actor_text, proc_text, endpoint)
                : zh_port_addr_format (text, sizeof text, actor_text, proc_text, port, endpoint);
        assert_true (n > 0);

        zh_addr_t addr = expect_round_trip (text);
        assert_int_equal (addr.kind, kind);
        kinds[kind]++;
        expect_id_fields (&addr.proc, &proc);
        assert_true (zh_span_eq (addr.endpoint, endpoint));
        if (kind != ZH_ADDR_PROC) expect_id_fields (&addr.actor, &actor);
        if (kind == ZH_ADDR_PORT) assert_true (addr.port == port);

        for (int m = 0; m < 8; m++)
            mutate_and_parse (text, (size_t)n);
    }
    assert_true (kinds[ZH_ADDR_PROC] > 1000 && kinds[ZH_ADDR_ACTOR] > 1000 &&
                 kinds[ZH_ADDR_PORT] > 1000);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_proc_address_with_label_only_round_trips),
        cmocka_unit_test (test_proc_address_with_label_and_uid_round_trips),
        cmocka_unit_test (test_proc_address_with_uid_only_round_trips),
        cmocka_unit_test (test_actor_address_names_actor_then_proc),
        cmocka_unit_test (test_port_address_carries_a_u64_port),
        cmocka_unit_test (test_endpoints_of_every_scheme_round_trip),
        cmocka_unit_test (test_address_splits_at_first_at_sign),
        cmocka_unit_test (test_labels_at_the_edges_of_the_rules),
        cmocka_unit_test (test_parse_reads_only_len_bytes),
        cmocka_unit_test (test_format_functions_build_what_parse_reads),
        cmocka_unit_test (test_format_refuses_a_buffer_too_small),
        cmocka_unit_test (test_uid58_known_vectors),
        cmocka_unit_test (test_uid58_round_trips_many_values),
        cmocka_unit_test (test_uid58_decode_refuses_bad_digits_overflow_and_leading_one),
        cmocka_unit_test (test_empty_address_is_refused),
        cmocka_unit_test (test_address_without_at_sign_is_refused),
        cmocka_unit_test (test_empty_endpoint_is_refused),
        cmocka_unit_test (test_unknown_endpoint_scheme_is_refused),
        cmocka_unit_test (test_tcp_endpoint_needs_host_and_port_in_range),
        cmocka_unit_test (test_endpoint_with_control_bytes_is_refused),
        cmocka_unit_test (test_endpoint_longer_than_its_bound_is_refused),
        cmocka_unit_test (test_label_must_start_with_a_letter),
        cmocka_unit_test (test_label_must_end_with_a_letter_or_digit),
        cmocka_unit_test (test_label_refuses_uppercase_and_other_bytes),
        cmocka_unit_test (test_label_of_64_bytes_is_refused),
        cmocka_unit_test (test_uid_with_letters_outside_base58_is_refused),
        cmocka_unit_test (test_uid_beyond_u64_is_refused),
        cmocka_unit_test (test_uid_with_leading_one_is_not_canonical),
        cmocka_unit_test (test_unclosed_or_empty_uid_is_refused),
        cmocka_unit_test (test_id_parts_must_be_in_grammar_order),
        cmocka_unit_test (test_port_must_be_a_canonical_u64),
        cmocka_unit_test (test_address_over_1024_bytes_is_refused),
        cmocka_unit_test (test_parse_kind_refuses_the_wrong_kind),
        cmocka_unit_test (test_label_check_alone),
        cmocka_unit_test (test_id_parse_alone),
        cmocka_unit_test (test_endpoint_check_alone),
        cmocka_unit_test (test_same_proc_ignores_actor_and_port),
        cmocka_unit_test (test_equal_compares_every_part),
        cmocka_unit_test (test_random_valid_addresses_round_trip_and_mutations_never_crash),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
