#!/usr/bin/python3
"""py_client.py — attach to a zhost broker, ask an echo proc, print round trips.

    py_client.py FRONTEND [ECHO_PROC] [-n COUNT] [--size BYTES]

e.g. with a broker running `--spawn pyecho="/usr/bin/python3 examples/py_echo_proc.py"`:

    /usr/bin/python3 examples/py_client.py tcp://127.0.0.1:7100 pyecho -n 1000

It asks port 1 of `echo.<ECHO_PROC>` who it is, then sends COUNT requests of
SIZE bytes to port 2 (which echoes them) and prints the round-trip times.
Needs the zhost package (clients/python/ in the repository) installed or on
PYTHONPATH; from a checkout it finds it by itself.
"""

import argparse
import os
import sys
import time

try:
    import zhost
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "clients", "python"))
    import zhost


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("frontend", help="the broker's frontend endpoint, e.g. tcp://127.0.0.1:7100")
    ap.add_argument("echo", nargs="?", default="pyecho", help="proc id of the echo proc")
    ap.add_argument("-n", "--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    try:
        proc = zhost.attach(args.frontend, label="py-client")
    except zhost.ZhostError as e:
        print("py_client: cannot attach to %s: %s" % (args.frontend, e), file=sys.stderr)
        return 1
    with proc:
        print("attached as %s (broker incarnation %d)" % (proc.address, proc.incarnation))
        who = "echo.%s:1@%s" % (args.echo, proc.endpoint)
        echo = "echo.%s:2@%s" % (args.echo, proc.endpoint)
        try:
            print("echo says it is %s" % proc.request(who, b"")[0].decode())
            payload = os.urandom(args.size)
            times = []
            for _ in range(args.count):
                t0 = time.perf_counter()
                parts = proc.request(echo, payload)
                times.append(time.perf_counter() - t0)
                assert parts == [payload], "echo changed the payload"
        except zhost.Undeliverable as e:
            print("py_client: %s" % e, file=sys.stderr)
            return 1
        except zhost.Timeout as e:
            print("py_client: %s" % e, file=sys.stderr)
            return 1
        times.sort()
        us = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1e6  # noqa: E731
        print("%d round trips of %d bytes: min %.0f us, median %.0f us, p99 %.0f us, max %.0f us"
              % (len(times), args.size, times[0] * 1e6, us(0.5), us(0.99), times[-1] * 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
