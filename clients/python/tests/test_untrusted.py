"""What comes off the wire is not trusted (zhost/protocol.py, MSG-1).

msgpack reserves a container at the size its header declares before it reads
an element: five bytes, b"\\xdd\\xff\\xff\\xff\\xff" (an array32 of 2**32-1),
would reserve 32 GiB. Every decode of wire bytes goes through
zhost.protocol.unpack, which refuses a declared count the bytes present
cannot hold. What a client does with such bytes (clients/python/README.md,
"Untrusted input"):

- a SEND or RETURN whose meta does not decode is delivered with meta {};
- a control command whose body does not decode is dropped (also while
  attach() waits for BOOTSTRAP);
- a host-agent answer that does not decode raises ZhostError.

In each case the client keeps working and the process's VmPeak
(/proc/self/status) stays flat: it grows by less than 64 MiB.
"""

import struct
import threading
import time

import pytest
import zmq

import zhost
from zhost import protocol as P

MiB = 1 << 20
VMPEAK_GROWTH_BOUND_KIB = 64 * 1024

ARRAY32_HUGE = b"\xdd\xff\xff\xff\xff"        # array32, 2**32-1 entries, in 5 bytes
MAP32_HUGE = b"\xdf\xff\xff\xff\xff"          # map32, 2**32-1 pairs, in 5 bytes
MAP_OF_HUGE_ARRAY = b"\x81\xa1x" + ARRAY32_HUGE  # {"x": array32 of 2**32-1}


def nested_claims(size=4 * MiB, depth=500):
    """A nest of array32 headers each claiming `size` entries, padded with
    nils to `size` bytes: every level is under a per-container limit of
    len(data), yet together they would reserve depth * size pointers
    (16 GiB here) before the first element is read."""
    data = b"".join(b"\xdd" + struct.pack(">I", size) for _ in range(depth))
    return data + b"\xc0" * (size - len(data))


def vmpeak_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmPeak:"):
                return int(line.split()[1])
    raise AssertionError("no VmPeak in /proc/self/status")


def test_unpack_refuses_counts_the_bytes_cannot_hold():
    before = vmpeak_kib()
    nest = nested_claims()
    for data in (ARRAY32_HUGE, MAP32_HUGE, MAP_OF_HUGE_ARRAY, b"\x81\xa1x" + nest[3:], nest,
                 b"\xdb\xff\xff\xff\xffabc",          # str32 longer than the bytes
                 b"\xc6\xff\xff\xff\xff",              # bin32
                 b"\xc9\xff\xff\xff\xff\x01ab"):       # ext32
        with pytest.raises(P.ProtocolError):
            P.unpack(data)
    grown = vmpeak_kib() - before
    assert grown < VMPEAK_GROWTH_BOUND_KIB, "VmPeak grew by %d KiB" % grown
    # well-formed input still decodes, the largest counts included
    for obj in ({"op": "list", "procs": [{"name": "w", "pid": 7}] * 300},
                [None] * 70000, {"k%d" % i: i for i in range(70000)}, "s" * 70000,
                b"\0" * 70000, [], {}, 0, -1, 2 ** 64 - 1, 1.5, None, True):
        assert P.unpack(P.pack(obj)) == obj
    # anything else that is not one msgpack object is a ProtocolError too
    for data in (b"", b"\xc1", b"\x92\x01", b"\x01\x02", b"\x81\x91\x01\x02"):
        with pytest.raises(P.ProtocolError):
            P.unpack(data)


def raw_head(dest, src, meta_raw, inline):
    """A SEND head with meta bytes as given (what a hostile sender can put on
    the wire: the broker checks only that meta starts with a map marker)."""
    d, s = dest.encode(), src.encode()
    return (P.header(P.SEND, P.DEFAULT_TTL, P.F_INLINE) + struct.pack(">H", len(d)) + d
            + struct.pack(">H", len(s)) + s + struct.pack(">I", len(meta_raw)) + meta_raw
            + inline)


def test_forged_meta_through_the_broker_is_read_as_empty(broker, clients):
    """mallory (a raw DEALER) sends alice messages whose meta declares huge
    containers; alice gets each with meta {} and goes on talking."""
    b = broker()
    alice = clients(b.frontend, label="alice")
    inbox = alice.actor("inbox").port(1)
    ctx = zmq.Context.instance()
    mallory = ctx.socket(zmq.DEALER)
    mallory.setsockopt(zmq.LINGER, 0)
    mallory.connect(b.frontend)
    try:
        mallory.send_multipart(P.encode_control(P.ATTACH, {"label": "mallory"}))
        assert mallory.poll(5000), "no BOOTSTRAP for mallory"
        boot = P.decode(mallory.recv_multipart())
        assert boot.cmd == P.BOOTSTRAP, boot
        src = "m.%s" % boot.body["proc"]
        before = vmpeak_kib()
        metas = (MAP32_HUGE, MAP_OF_HUGE_ARRAY, b"\x81\xa1x" + nested_claims()[3:])
        for i, meta_raw in enumerate(metas):
            mallory.send_multipart([raw_head(inbox.address, src, meta_raw, b"evil %d" % i)])
        for i in range(len(metas)):
            msg = inbox.recv(timeout=5)
            assert msg.parts == [b"evil %d" % i] and msg.meta == {}, msg
            assert msg.reply is None and msg.seq is None
        grown = vmpeak_kib() - before
        assert grown < VMPEAK_GROWTH_BOUND_KIB, "VmPeak grew by %d KiB" % grown
    finally:
        mallory.close(0)
    # alice keeps working: a request to herself, and the agent
    echo = alice.actor("echo").port(2, callback=lambda m: m.respond(*m.parts))
    assert alice.request(echo.address, b"still here", timeout=5) == [b"still here"]
    assert alice.agent.ping()["ok"] is True


class FakeBroker(object):
    """A ROUTER in a thread that answers like a broker, but with the bytes the
    test scripts: bootstrap(endpoint) gives the replies to ATTACH (each a list
    of frames), `answers` are the payloads of successive host-agent answers."""

    def __init__(self, bootstrap, answers):
        self.bootstrap = bootstrap
        self.answers = list(answers)
        self.endpoint = None
        self.errors = []
        self._bound = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._bound.wait(5), "fake broker did not bind"

    def _serve(self):
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = "tcp://127.0.0.1:%d" % port
        self._bound.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                rid, *frames = sock.recv_multipart()
                msg = P.decode(frames)
                if msg.cmd == P.ATTACH:
                    for reply in self.bootstrap(self.endpoint):
                        sock.send_multipart([rid] + reply)
                elif msg.cmd == P.PING:
                    sock.send_multipart([rid] + P.encode_control(P.PONG))
                elif msg.cmd == P.SEND and self.answers:
                    agent = "host_agent.service@" + self.endpoint
                    sock.send_multipart([rid] + P.encode_send(
                        msg.reply, agent, [self.answers.pop(0)], {"seq": msg.seq},
                        undeliverable=False))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
        finally:
            sock.close(0)

    def close(self):
        self._stop.set()
        self._thread.join(5)


def test_forged_bodies_and_answers_from_a_fake_broker():
    """A 'broker' that answers ATTACH first with a BOOTSTRAP and an ERROR whose
    bodies declare 2**32-1 entries, then with BOOTSTRAPs without a usable
    proc address, then with a real BOOTSTRAP; and answers
    agent requests with such payloads, then with a real answer. attach()
    drops the bad bodies and takes the good BOOTSTRAP; the bad answers raise
    ZhostError; the good one comes through."""
    def bootstrap(ep):
        return [[P.header(P.BOOTSTRAP), MAP32_HUGE],
                [P.header(P.BOOTSTRAP), nested_claims()],
                [P.header(P.ERROR), ARRAY32_HUGE],
                # well-formed, but no usable proc address: ignored too
                P.encode_control(P.BOOTSTRAP, {"host": ep, "heartbeat_ms": 1000}),
                P.encode_control(P.BOOTSTRAP, {"proc": "Not An Address", "host": ep}),
                P.encode_control(P.BOOTSTRAP, {
                    "proc": "remote<2>@" + ep, "host": ep, "agent": "host_agent.service@" + ep,
                    "heartbeat_ms": 1000, "max_msg_bytes": 16 * MiB, "hwm": 1000,
                    "incarnation": 7})]

    good = P.pack({"ok": True, "host": "h", "incarnation": 7, "version": "fake"})
    fake = FakeBroker(bootstrap, [good, ARRAY32_HUGE, MAP_OF_HUGE_ARRAY, nested_claims(), good])
    try:
        alice = zhost.attach(fake.endpoint, timeout=5.0)
        try:
            assert alice.address == "remote<2>@" + fake.endpoint
            assert alice.incarnation == 7
            # VmPeak from here: every thread of the test (the fake broker's,
            # libzmq's) has started and made its malloc arena, which alone
            # reserves 64 MiB of address space each and would hide nothing
            # but confuse the measure.
            assert alice.agent.ping(timeout=5.0)["version"] == "fake"
            before = vmpeak_kib()
            for _ in range(3):
                with pytest.raises(zhost.ZhostError) as info:
                    alice.agent.ping(timeout=5.0)
                assert "not msgpack" in str(info.value)
                assert not isinstance(info.value, zhost.Timeout)
            assert alice.agent.ping(timeout=5.0)["version"] == "fake"
            grown = vmpeak_kib() - before
        finally:
            alice.close(timeout=0.2)
    finally:
        fake.close()
    assert not fake.errors, fake.errors
    assert grown < VMPEAK_GROWTH_BOUND_KIB, "VmPeak grew by %d KiB" % grown
