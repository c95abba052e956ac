"""The agent's watch, unwatch and logs ops (docs/protocol.md §8;
broker/zh_watch.c WA-1..WA-3), as a supervisor or a dashboard uses them.

Scenarios: a watcher gets the proc list, then every state change of a proc
spawned and stopped, in order, each carrying its request's seq; after
unwatch (or when the watcher is gone) nothing more is sent to it; a link
to another broker coming up and going down is an event; `logs` gives the
kept lines with their streams, and with follow every new line until the
proc ends; `logs` is admin only. zhost-ctl watch prints each change as it
happens (text or JSON lines) and ends cleanly on SIGINT; zhost-ctl logs -f
follows a proc and exits 0 when it ends; zhost-ctl config names where each
setting came from (flag, env, file, default).
"""

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading

import zhp
from conftest import BUILD_DIR, broker_env
from test_peers import wait_ready

CTL = os.path.join(BUILD_DIR, "zhost-ctl")

HERE = os.path.dirname(os.path.abspath(__file__))
READY_PROC = os.path.join(HERE, "procs", "ready_proc.py")


def start_watch(c, op="watch", **args):
    """Send op; return (answer, the reply port its events go to, seq)."""
    seq = 7000 + c._next_port
    c._next_port += 1
    reply = c.port(c._next_port)
    req = {"op": op}
    req.update(args)
    c.send(c.agent_port(), [zhp.pack(req)], meta={"reply": reply, "seq": seq})
    msg = c.wait_for(lambda m: m.cmd == zhp.SEND and m.dest == reply, 5.0)
    assert msg.meta.get("seq") == seq, msg
    return zhp.unpack(msg.parts[0]), reply, seq


def next_event(c, reply, seq, timeout=10.0):
    msg = c.wait_for(lambda m: m.cmd == zhp.SEND and m.dest == reply, timeout)
    assert msg.src == c.agent and msg.meta.get("seq") == seq, msg  # WA-1
    return zhp.unpack(msg.parts[0])


def spawn_ready_proc(admin, name, *args):
    ans = admin.request("spawn", name=name, argv=[sys.executable, READY_PROC, *args],
                        timeout=15.0)
    assert ans["ok"] is True, ans
    return ans


def test_a_watcher_sees_the_list_then_every_change_in_order(broker, client):
    b = broker()
    admin = client(b, via="control")
    spawn_ready_proc(admin, "first")
    watcher = client(b)
    answer, reply, seq = start_watch(watcher)
    assert answer["ok"] is True
    assert [(p["name"], p["status"]) for p in answer["procs"]] == [("first", "ready")]

    spawn_ready_proc(admin, "w")
    assert admin.request("stop", name="w", timeout=15.0)["status"] == "stopped"
    seen = [next_event(watcher, reply, seq) for _ in range(3)]
    assert [(e["event"], e["name"], e["from"], e["to"]) for e in seen] == [
        ("proc", "w", "starting", "ready"),
        ("proc", "w", "ready", "stopping"),
        ("proc", "w", "stopping", "stopped"),
    ], seen
    assert seen[2]["exit_code"] == 0 and seen[0]["pid"] > 0
    assert seen[0]["proc"] == "w@" + b.ep

    # a proc that fails before READY: its failure is an event too
    ans = admin.request("spawn", name="bad", argv=[sys.executable, READY_PROC, "--exit", "3"],
                        timeout=15.0)
    assert ans["ok"] is False
    end = next_event(watcher, reply, seq)
    assert (end["name"], end["from"], end["to"], end["exit_code"]) == (
        "bad", "starting", "stopped", 3), end


def test_after_unwatch_or_detach_nothing_more_is_sent(broker, client):
    b = broker()
    admin = client(b, via="control")
    watcher = client(b)
    _, reply, seq = start_watch(watcher)
    gone = client(b)
    start_watch(gone)
    gone.bye()  # WA-2: this watcher leaves by detaching

    ans = watcher.request("unwatch")
    assert ans == {"ok": True, "ended": 1}, ans
    spawn_ready_proc(admin, "after")
    # the starting→ready event would be posted before the spawn answer it
    # precedes; the watcher's next message is its own ping answer, nothing
    # from the old watch.
    assert watcher.request("ping")["ok"] is True
    stray = [m for m in watcher.inbox if m.cmd == zhp.SEND and m.dest == reply]
    assert stray == [], stray
    assert watcher.request("unwatch") == {"ok": True, "ended": 0}


def test_watchers_are_bounded_and_a_departed_one_frees_its_place(broker, client):
    """WA-3: at most 256 watchers; the next is OVERLOADED (and watches
    nothing); a watcher that detached frees its place for the next add."""
    b = broker()
    many = client(b)
    for _ in range(255):
        assert start_watch(many)[0]["ok"] is True
    leaving = client(b)
    assert start_watch(leaving)[0]["ok"] is True  # the 256th
    refused, _, _ = start_watch(client(b))
    assert refused["ok"] is False and refused["error"]["code"] == "OVERLOADED", refused
    leaving.bye()
    assert start_watch(client(b))[0]["ok"] is True
    assert many.request("unwatch") == {"ok": True, "ended": 255}


def test_peer_links_coming_up_and_going_down_are_events(broker, client):
    far = broker()
    near = broker()
    watcher = client(near)
    _, reply, seq = start_watch(watcher)
    watcher.send(client(far).port(1), [b"hello far"])
    up = next_event(watcher, reply, seq)
    assert up["event"] == "peer" and up["endpoint"] == far.ep and up["state"] == "up", up
    assert up["incarnation"] > 0
    far.signal(signal.SIGTERM)  # its BYE closes the link
    assert far.wait(20) == 0
    down = next_event(watcher, reply, seq)
    assert (down["endpoint"], down["state"]) == (far.ep, "down"), down


def test_logs_gives_kept_lines_and_follows_until_the_proc_ends(broker, client):
    b = broker()
    admin = client(b, via="control")
    spawn_ready_proc(admin, "talk", "--chatter", "6")
    wait_ready(admin, "talk")
    # the first lines: the greeting, then chatter 0.. as they come
    answer, reply, seq = start_watch(admin, "logs", name="talk", follow=True)
    assert answer["ok"] is True and answer["following"] is True, answer
    lines = [(x["stream"], x["line"]) for x in answer["lines"]]
    assert lines[0] == ("stdout", "ready_proc talk up GREETING="), lines
    while len(lines) < 7:
        ev = next_event(admin, reply, seq)
        assert ev["event"] == "output" and ev["name"] == "talk", ev
        lines.append((ev["stream"], ev["line"]))
    assert lines[1:] == [("stderr" if i % 2 else "stdout", "chatter %d" % i) for i in range(6)]

    # the kept lines again, the last 2 only, without follow
    last = admin.request("logs", name="talk", lines=2)
    assert [x["line"] for x in last["lines"]] == ["chatter 4", "chatter 5"], last
    assert last["following"] is False

    # the follow ends with the proc: its last line comes, then nothing
    assert admin.request("stop", name="talk", timeout=15.0)["status"] == "stopped"
    ev = next_event(admin, reply, seq)
    assert ev["line"] == "ready_proc talk done", ev
    assert admin.request("ping")["ok"] is True
    assert [m for m in admin.inbox if m.cmd == zhp.SEND and m.dest == reply] == []


def test_logs_is_admin_only_and_checks_its_arguments(broker, client):
    b = broker()
    admin = client(b, via="control")
    spawn_ready_proc(admin, "quiet")
    no = client(b).request("logs", name="quiet")
    assert no["ok"] is False and no["error"]["code"] == "NOT_ALLOWED", no
    bad = admin.request("logs", name="quiet", follow="yes")
    assert bad["error"]["code"] == "BAD_REQUEST", bad
    missing = admin.request("logs", name="nobody")
    assert missing["error"]["code"] == "NO_SUCH_PROC", missing


# --- zhost-ctl watch, logs, config -------------------------------------------

class Lines(object):
    """A child's pipe read by a thread, line by line, into a queue."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.queue.put(line.rstrip("\n"))

    def read(self):
        return self.queue.get(timeout=10.0)  # raises queue.Empty: no line within 10 s


@contextlib.contextmanager
def ctl_popen(b, *args):
    """zhost-ctl running in the background; killed if the test leaves it running."""
    p = subprocess.Popen([CTL, "--runtime-dir", b.runtime_dir, *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=broker_env())
    p.out, p.err = Lines(p.stdout), Lines(p.stderr)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def read_line(lines):
    return lines.read()


def test_ctl_watch_prints_each_change_as_it_happens(broker, client):
    b = broker()
    admin = client(b, via="control")
    spawn_ready_proc(admin, "early")
    with ctl_popen(b, "watch") as watch:
        assert read_line(watch.out) == "proc early: ready pid %d" % (
            admin.request("status", name="early")["proc"]["pid"])
        spawn_ready_proc(admin, "late")
        line = read_line(watch.out)
        assert line.startswith("proc late: starting -> ready pid "), line
        admin.request("stop", name="late", timeout=15.0)
        assert read_line(watch.out).startswith("proc late: ready -> stopping")
        assert read_line(watch.out).endswith("stopping -> stopped pid %s exit 0" %
                                                line.rsplit(" ", 1)[1])
        watch.send_signal(signal.SIGINT)  # the user ends it: exit 0, clean BYE
        assert watch.wait(10) == 0


def test_ctl_watch_json_lines(broker, client):
    b = broker()
    admin = client(b, via="control")
    with ctl_popen(b, "--json", "watch") as watch:
        first = json.loads(read_line(watch.out))
        assert first == {"ok": True, "procs": []}, first
        spawn_ready_proc(admin, "j")
        ev = json.loads(read_line(watch.out))
        assert (ev["event"], ev["name"], ev["from"], ev["to"]) == ("proc", "j", "starting",
                                                                   "ready"), ev
        watch.terminate()
        assert watch.wait(10) == 0


def test_ctl_logs_follow_ends_with_the_proc(broker, client):
    b = broker()
    admin = client(b, via="control")
    spawn_ready_proc(admin, "chat", "--chatter", "4")
    with ctl_popen(b, "logs", "-f", "chat") as logs:
        assert read_line(logs.out) == "ready_proc chat up GREETING="
        assert [read_line(logs.out) for _ in range(2)] == ["chatter 0", "chatter 2"]
        assert [read_line(logs.err) for _ in range(2)] == ["chatter 1", "chatter 3"]
        admin.request("stop", name="chat", timeout=15.0)
        assert read_line(logs.out) == "ready_proc chat done"
        assert logs.wait(10) == 0  # the proc ended: so does the follow
    r = subprocess.run([CTL, "--runtime-dir", b.runtime_dir, "logs", "--lines", "1", "chat"],
                       capture_output=True, text=True, env=broker_env(), timeout=30)
    assert r.returncode == 0 and r.stdout == "ready_proc chat done\n", r


def test_ctl_config_names_where_each_setting_came_from(broker, tmp_path):
    conf = tmp_path / "zhost.conf"
    conf.write_text('hwm = 500\nlinger = "1s"\n')
    b = broker("--config", conf, "--ttl", "9", env={"ZHOST_MAX_IN_FLIGHT": "3"})
    r = subprocess.run([CTL, "--runtime-dir", b.runtime_dir, "config"], capture_output=True,
                       text=True, env=broker_env(), timeout=30)
    assert r.returncode == 0, r
    rows = {}
    for line in r.stdout.splitlines()[2:]:
        key, value, source = line.split()
        rows[key] = (value, source)
    assert r.stdout.startswith("# config file %s\n" % conf), r.stdout
    assert rows["ttl"] == ("9", "flag")
    assert rows["max-in-flight"] == ("3", "env")
    assert rows["hwm"] == ("500", "file")
    assert rows["linger"] == ("1s", "file")
    assert rows["heartbeat"] == ("1s", "default")
    assert rows["runtime-dir"] == (b.runtime_dir, "flag")
