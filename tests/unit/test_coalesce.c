/*  test_coalesce.c — the BATCH being built toward one connection
    (broker/zh_coalesce.c, CO-1 and CO-2).

    Scenarios: a message alone leaves as the very frame it came in (no
    copy); a second one turns both into a BATCH whose walk gives them back
    in order, byte for byte; the frame never grows past its bound, and a
    message that would take it past is refused until the batch is taken;
    the buffer is reused; copies and moves can be mixed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zmq.h>

#include "zh_coalesce.h"
#include "zh_proto.h"

//  A one-frame SEND carrying text, as bytes in buf; its length.
static size_t
s_send (uint8_t *buf, size_t cap, const char *text)
{
    const char *dest = "echo.e:1@tcp://127.0.0.1:7100", *src = "c.a<2>@tcp://127.0.0.1:7100";
    long n = zh_head_write (buf, cap, ZH_SEND, 64, ZH_FLAG_INLINE, dest, strlen (dest), src,
                            strlen (src), NULL, 0, (const uint8_t *)text, strlen (text));
    assert_true (n > 0);
    return (size_t)n;
}

static void
s_msg (zmq_msg_t *msg, const char *text)
{
    uint8_t buf[256];
    size_t n = s_send (buf, sizeof buf, text);
    assert_int_equal (zmq_msg_init_size (msg, n), 0);
    memcpy (zmq_msg_data (msg), buf, n);
}

static void
test_a_message_alone_leaves_as_the_frame_it_came_in (void **state)
{
    (void)state;
    zh_coalesce_t *co = zh_coalesce_new (4096);
    assert_non_null (co);
    zmq_msg_t in, out;
    s_msg (&in, "a message long enough not to be a very small zmq message");
    const void *data = zmq_msg_data (&in);
    assert_int_equal (zh_coalesce_add (co, &in, NULL, 0), 0);
    assert_int_equal (zmq_msg_size (&in), 0); //  moved in
    assert_int_equal (zh_coalesce_count (co), 1);
    size_t count = 0;
    assert_int_equal (zh_coalesce_take (co, &out, &count), 0);
    assert_int_equal (count, 1);
    assert_ptr_equal (zmq_msg_data (&out), data); //  CO-1: the same bytes, uncopied
    assert_int_equal (((uint8_t *)zmq_msg_data (&out))[3], ZH_SEND);
    assert_int_equal (zh_coalesce_count (co), 0);
    zmq_msg_close (&in);
    zmq_msg_close (&out);
    zh_coalesce_destroy (&co);
    assert_null (co);
}

static void
test_two_or_more_make_a_batch_that_walks_back_in_order (void **state)
{
    (void)state;
    zh_coalesce_t *co = zh_coalesce_new (4096);
    const char *texts[] = {"first (moved)", "second (copied)", "third (moved)", ""};
    uint8_t bytes[4][256];
    size_t lens[4];
    for (int i = 0; i < 4; i++) {
        lens[i] = s_send (bytes[i], sizeof bytes[i], texts[i]);
        if (i % 2 == 0) {
            zmq_msg_t m;
            assert_int_equal (zmq_msg_init_size (&m, lens[i]), 0);
            memcpy (zmq_msg_data (&m), bytes[i], lens[i]);
            assert_int_equal (zh_coalesce_add (co, &m, NULL, 0), 0);
            zmq_msg_close (&m);
        } else
            assert_int_equal (zh_coalesce_add (co, NULL, bytes[i], lens[i]), 0);
    }
    zmq_msg_t out;
    size_t count = 0;
    assert_int_equal (zh_coalesce_take (co, &out, &count), 0);
    assert_int_equal (count, 4);
    zh_batch_iter_t it;
    zh_error_t err;
    assert_int_equal (zh_batch_begin (&it, zmq_msg_data (&out), zmq_msg_size (&out), &err), 0);
    const uint8_t *e;
    size_t len;
    for (int i = 0; i < 4; i++) {
        assert_int_equal (zh_batch_next (&it, &e, &len, &err), 1);
        assert_int_equal (len, lens[i]);
        assert_memory_equal (e, bytes[i], len);
    }
    assert_int_equal (zh_batch_next (&it, &e, &len, &err), 0);
    zmq_msg_close (&out);
    //  The buffer is reused: the next batch is built the same way.
    assert_int_equal (zh_coalesce_add (co, NULL, bytes[0], lens[0]), 0);
    assert_int_equal (zh_coalesce_add (co, NULL, bytes[1], lens[1]), 0);
    assert_int_equal (zh_coalesce_take (co, &out, &count), 0);
    assert_int_equal (count, 2);
    assert_int_equal (zmq_msg_size (&out),
                      ZH_HEADER_SIZE + 2 * ZH_BATCH_LEN_SIZE + lens[0] + lens[1]);
    zmq_msg_close (&out);
    zh_coalesce_destroy (&co);
}

static void
test_the_frame_never_grows_past_its_bound (void **state)
{
    (void)state;
    uint8_t one[256];
    size_t len = s_send (one, sizeof one, "0123456789");
    size_t each = ZH_BATCH_LEN_SIZE + len;
    size_t max = ZH_HEADER_SIZE + 3 * each; //  room for exactly three
    zh_coalesce_t *co = zh_coalesce_new (max);
    for (int i = 0; i < 3; i++)
        assert_int_equal (zh_coalesce_add (co, NULL, one, len), 0);
    assert_false (zh_coalesce_fits (co, len));
    assert_int_equal (zh_coalesce_add (co, NULL, one, len), -1); //  CO-2: refused, nothing taken
    assert_int_equal (zh_coalesce_count (co), 3);
    zmq_msg_t out;
    size_t count;
    assert_int_equal (zh_coalesce_take (co, &out, &count), 0);
    assert_int_equal (count, 3);
    assert_int_equal (zmq_msg_size (&out), max);
    zmq_msg_close (&out);
    assert_true (zh_coalesce_fits (co, len));
    //  A message that no BATCH of this bound can hold never fits, and an
    //  empty one is not a message.
    assert_false (zh_coalesce_fits (co, max));
    assert_false (zh_coalesce_fits (co, 0));
    //  Taking nothing gives an empty frame and a count of 0.
    assert_int_equal (zh_coalesce_take (co, &out, &count), 0);
    assert_int_equal (count, 0);
    zmq_msg_close (&out);
    zh_coalesce_destroy (&co);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_a_message_alone_leaves_as_the_frame_it_came_in),
        cmocka_unit_test (test_two_or_more_make_a_batch_that_walks_back_in_order),
        cmocka_unit_test (test_the_frame_never_grows_past_its_bound),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
