"""The host agent host_agent.service@<ep>, port 1: request/reply through meta
`reply` (docs/protocol.md §8, docs/broker.md "Host agent")."""

import pytest

import zhp

ADMIN_OPS = [
    ("spawn", {"name": "w1", "argv": ["/bin/true"]}),
    ("stop", {"name": "w1"}),
    ("kill", {"name": "w1"}),
    ("stop_all", {}),
    ("shutdown", {}),  # from the frontend: refused, the broker stays
]
REFUSALS = ("NOT_ALLOWED", "UNKNOWN_OP", "BAD_REQUEST")


def failed(answer, code):
    assert answer["ok"] is False, answer
    err = answer.get("error")
    assert isinstance(err, dict) and err.get("code") == code, answer
    assert isinstance(err.get("message"), str), answer


def test_ping(broker, client):
    b = broker()
    c = client(b)
    ans = c.request("ping")
    assert ans["ok"] is True
    assert ans["host"] == b.ep
    assert ans["incarnation"] == c.bootstrap["incarnation"]
    assert isinstance(ans["version"], str) and ans["version"]


def test_reply_is_a_send_to_the_reply_port(broker, client):
    b = broker()
    c = client(b)
    reply = c.port(55, actor="waiter")
    c.send(c.agent_port(), [zhp.pack({"op": "ping"})], meta={"reply": reply, "seq": 3})
    msg = c.expect(zhp.SEND)
    assert msg.dest == reply
    assert msg.src == "host_agent.service@" + b.ep
    assert msg.flags & zhp.F_INLINE and len(msg.parts) == 1
    assert zhp.unpack(msg.parts[0])["ok"] is True


def test_reply_to_another_client_is_403(broker, client):
    """docs/protocol.md §8: `reply` must be a port of the requester's own
    proc; naming someone else's gets ERROR 403 and no answer anywhere, so
    the agent cannot be used to send to a third party."""
    b = broker()
    asker, listener = client(b), client(b)
    asker.send(asker.agent_port(), [zhp.pack({"op": "ping"})],
               meta={"reply": listener.port(4), "seq": 9})
    err = asker.expect_error(403)
    assert err.body.get("seq") == 9
    assert listener.try_recv(0.2) is None
    ans = asker.request("ping")  # its own reply port still works
    assert ans["ok"] is True


def test_list_and_status(broker, client):
    b = broker()
    c = client(b)
    ans = c.request("list")
    assert ans["ok"] is True and isinstance(ans["procs"], list)
    for p in ans["procs"]:
        assert {"name", "proc", "status"} <= set(p), p
    ans = c.request("status", name="nosuchproc")
    assert ans["ok"] is False and isinstance(ans["error"]["code"], str)


def test_unknown_op(broker, client):
    b = broker()
    failed(client(b).request("frobnicate"), "UNKNOWN_OP")


@pytest.mark.parametrize("payload", [
    zhp.pack([1, 2, 3]), zhp.pack({"noop": 1}), zhp.pack({"op": 7}), b"\xc1garbage", b"",
])
def test_bad_request(broker, client, payload):
    b = broker()
    c = client(b)
    reply = c.port(8)
    c.send(c.agent_port(), [payload], meta={"reply": reply})
    msg = c.expect(zhp.SEND)
    assert msg.dest == reply
    failed(zhp.unpack(msg.parts[0]), "BAD_REQUEST")


def test_request_without_reply_is_not_answered(broker, client):
    b = broker()
    c = client(b)
    c.send(c.agent_port(), [zhp.pack({"op": "ping"})])
    assert c.try_recv(0.3) is None
    assert c.request("ping")["ok"] is True  # still serving


@pytest.mark.parametrize("op,args", ADMIN_OPS)
def test_admin_op_from_frontend_not_allowed(broker, client, op, args):
    b = broker()
    c = client(b)
    failed(c.request(op, **args), "NOT_ALLOWED")
    assert c.request("ping")["ok"] is True and b.alive()


def test_admin_ops_from_control_socket_are_admitted(broker, client):
    b = broker()
    c = client(b, via="control")
    # a child that exits before READY: SPAWN_FAILED (docs/protocol.md §6)
    failed(c.request("spawn", name="w1", argv=["/bin/true"], timeout=10.0), "SPAWN_FAILED")
    for op in ("stop", "kill"):
        ans = c.request(op, name="nosuch")
        assert ans["ok"] is False and ans["error"]["code"] not in REFUSALS, (op, ans)
    ans = c.request("stop_all")
    assert ans["ok"] is True, ans
    assert (ans["attempted"], ans["stopped"], ans["failed"]) == (0, 0, 0), ans


@pytest.mark.parametrize("name", ["service", "local", "Bad", "1x", "a.b"])
def test_spawn_reserved_or_invalid_name(broker, client, name):
    b = broker()
    c = client(b, via="control")
    failed(c.request("spawn", name=name, argv=["/bin/sleep", "5"], timeout=10.0), "INVALID_NAME")


def test_shutdown_op_from_control_socket(broker, client):
    b = broker("--linger", "300ms")
    c = client(b, via="control")
    front = client(b)
    ans = c.request("shutdown", timeout=5.0)
    assert ans["ok"] is True, ans
    b.expect_exit = b.wait(5.0)
    assert b.expect_exit == 0, "broker did not exit 0 after the shutdown op"
    byes = {}
    for x in (c, front):
        msg = x.try_recv(1.0)
        byes[x.name] = msg.body.get("reason") if msg is not None and msg.cmd == zhp.BYE else msg
    assert byes == {c.name: "shutdown", front.name: "shutdown"}, "BYEs received: %r" % byes


def test_other_actor_on_service_is_no_such_actor(broker, client):
    b = broker()
    c = client(b)
    sent = c.send("nobody.service:1@" + b.ep, [zhp.pack({"op": "ping"})],
                  meta={"reply": c.port(2)})
    zhp.check_return(c.expect(zhp.RETURN), "NO_SUCH_ACTOR", sent, b.ep)


def test_local_proc_is_empty(broker, client):
    b = broker()
    c = client(b)
    sent = c.send("x.local:1@" + b.ep, [b"hi"])
    zhp.check_return(c.expect(zhp.RETURN), "NO_SUCH_ACTOR", sent, b.ep)


def test_host_agent_port_2_is_no_such_port(broker, client):
    b = broker()
    c = client(b)
    sent = c.send("host_agent.service:2@" + b.ep, [zhp.pack({"op": "ping"})],
                  meta={"reply": c.port(2), "seq": 1})
    zhp.check_return(c.expect(zhp.RETURN), "NO_SUCH_PORT", sent, b.ep)


def stats(c):
    ans = c.request("stats")
    assert ans["ok"] is True, ans
    for key in ("routed", "returned", "abandoned", "dropped", "rejected", "procs",
                "connections"):
        assert key in ans, "stats lacks %r: %r" % (key, ans)
    return ans


def test_stats_shape(broker, client):
    b = broker()
    s = stats(client(b))
    assert isinstance(s["routed"], int) and isinstance(s["abandoned"], int)
    assert isinstance(s["dropped"], int) and isinstance(s["connections"], int)
    assert isinstance(s["returned"], dict) and isinstance(s["rejected"], dict)
    assert isinstance(s["procs"], dict)


def test_stats_counters_move(broker, client):
    b = broker()
    a, bob, watcher = client(b), client(b), client(b)
    s0 = stats(watcher)

    for i in range(5):
        a.send(bob.port(), [b"m"], meta={"seq": i})
    for _ in range(5):
        bob.expect(zhp.SEND)
    s1 = stats(watcher)
    assert s1["routed"] - s0["routed"] >= 5
    aid, bid = zhp.proc_id(a.proc), zhp.proc_id(bob.proc)
    assert s1["procs"][aid]["in"] - s0["procs"].get(aid, {"in": 0})["in"] == 5, s1["procs"]
    assert s1["procs"][bid]["out"] - s0["procs"].get(bid, {"out": 0})["out"] == 5, s1["procs"]
    assert s1["connections"] >= 3

    # a flagged SEND to nobody: returned NO_SUCH_PROC
    a.send("x.ghost:1@" + b.ep, [b"r"])
    a.expect(zhp.RETURN)
    # an unflagged one: dropped, no RETURN
    a.send("x.ghost:1@" + b.ep, [b"d"], returnable=False)
    assert a.try_recv(0.2) is None
    # a RETURN nobody can take: abandoned, never bounced (a RETURN's dest
    # is the original src, an actor address)
    a.send("x.ghost@" + b.ep, [b"ab"], cmd=zhp.RETURN, returnable=False)
    assert a.try_recv(0.2) is None
    # a bad frame: rejected with ERROR 400
    a.send_frames([b"XX\x01\x20\x00\x00"])
    a.expect_error(400)
    s2 = stats(watcher)
    assert s2["returned"].get("NO_SUCH_PROC", 0) - s1["returned"].get("NO_SUCH_PROC", 0) == 1, s2
    assert s2["dropped"] - s1["dropped"] == 1, s2
    assert s2["abandoned"] - s1["abandoned"] == 1, s2
    assert s2["rejected"].get("400", 0) - s1["rejected"].get("400", 0) == 1, s2
