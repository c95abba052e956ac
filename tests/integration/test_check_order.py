"""The order in which the broker checks a message (docs/protocol.md §3): header
length and magic (400) → version (426) → command (404) → handshake (401) →
layout (400) → principal (403). A connection that has not attached yet
still gets the header errors first; a readable SEND head gets 401 with its
dest and seq; the fast path (BR-5 caches) keeps the same verdicts for a
connection that sent a good message first."""

import zhp


def test_unattached_connection_gets_header_errors_before_401(broker, client):
    b = broker()
    c = client(b, attach=False)
    good = zhp.encode_send("x.someone:1@" + b.ep, "a.nobody@" + b.ep, [b"x"], {"seq": 9})
    bad_magic = [b"XH" + good[0][2:]] + good[1:]
    c.send_frames(bad_magic)
    c.expect_error(400)
    v2 = [good[0][:2] + b"\x02" + good[0][3:]] + good[1:]
    c.send_frames(v2)
    c.expect_error(426)
    c.send_frames(good)
    err = c.expect_error(401)
    assert err.body["dest"] == "x.someone:1@" + b.ep and err.body["seq"] == 9


def test_cached_src_and_dest_keep_their_verdicts(broker, client):
    b = broker()
    a, r = client(b), client(b)
    for i in range(3):
        a.send(r.port(), [b"%d" % i], meta={"seq": i})
        assert r.expect(zhp.SEND).parts == [b"%d" % i]
    # the same dest from the same connection, now with a forged src: 403
    a.send(r.port(), [b"forged"], src="a.%s@%s" % (zhp.proc_id(r.proc), b.ep))
    a.expect_error(403)
    assert r.try_recv(0.2) is None
    # a good src again after the forged one is still routed
    a.send(r.port(), [b"again"])
    assert r.expect(zhp.SEND).parts == [b"again"]
    # once the receiver has left, the cached route is not used: PROC_GONE
    r.bye()
    a.send(r.port(), [b"late"])
    ret = a.expect(zhp.RETURN)
    assert ret.meta["failures"][0]["code"] == "PROC_GONE"
