#!/usr/bin/python3
"""py_echo_proc.py — a spawned zhost proc written in Python (the zhost-echo contract).

Start it through the broker, e.g.

    zhost-broker --spawn pyecho="/usr/bin/python3 examples/py_echo_proc.py"
    zhost-ctl spawn pyecho -- /usr/bin/python3 examples/py_echo_proc.py

It boots from ZHOST_PROC / ZHOST_BACKEND / ZHOST_HOST / ZHOST_HEARTBEAT_MS
and hosts the actor `echo`:

    port 1  a message with meta `reply` is answered with one part: this
            actor's address as text, e.g. `echo.pyecho@tcp://127.0.0.1:7100`
    port 2  a message with meta `reply` is answered with its payload parts,
            unchanged

Answers carry the request's `seq`. Messages without `reply` are dropped;
other actors and ports come back NO_SUCH_ACTOR / NO_SUCH_PORT when flagged.
On STOP it says BYE and exits 0.
Needs the zhost package installed or on PYTHONPATH (clients/python/ in the
repository); when run from a checkout it finds it there by itself.
"""

import os
import sys

try:
    import zhost
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "clients", "python"))
    import zhost


def main():
    try:
        proc = zhost.boot(actor="echo")
    except zhost.BootError as e:
        print("py_echo_proc: %s" % e, file=sys.stderr)
        return 2
    echo = proc.actor("echo")

    def whoami(msg):
        if msg.reply:
            msg.respond(echo.address)

    def mirror(msg):
        if msg.reply:
            msg.respond(*msg.parts)

    echo.port(1, callback=whoami)
    echo.port(2, callback=mirror)
    # an answer whose asker has gone is nobody's business here
    proc.on_undeliverable(lambda exc: None)
    proc.on_error(lambda err: print("py_echo_proc: %s" % err, file=sys.stderr))
    proc.ready()
    print("py_echo_proc %s up" % echo.address, flush=True)
    try:
        stop = proc.run()
    except zhost.Closed as e:
        print("py_echo_proc: broker closed: %s" % e.reason, flush=True)
        return 0
    proc.close(reason="stopped")
    print("py_echo_proc stopped (%s)" % (stop or {}).get("reason", ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
