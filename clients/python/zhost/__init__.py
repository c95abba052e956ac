"""zhost — a Python client for the zhost broker (ZHP/1).

    import zhost

    with zhost.attach("tcp://127.0.0.1:7100", label="me") as proc:
        inbox = proc.actor("me").port(1)
        print(proc.request("echo.e1:1@tcp://127.0.0.1:7100", b"hi"))
        print(proc.agent.ping())

A spawned proc:

    proc = zhost.boot()
    proc.actor("echo").port(1, callback=lambda m: m.respond(m.parts[0]))
    proc.ready()
    proc.run()          # until STOP
    proc.close()        # BYE

See clients/python/README.md.
"""

from . import protocol
from .client import (Actor, Agent, AgentError, BootError, BrokerError, Closed,
                     HandshakeFailed, Port, Proc, Timeout, Undeliverable, ZhostError, attach,
                     boot, load_curve)
from .protocol import (Address, AddressError, Message, ProtocolError, parse_address,
                       uid58_decode, uid58_encode)

__version__ = "0.1.0"

__all__ = ["attach", "boot", "load_curve", "HandshakeFailed", "Proc", "Actor", "Port", "Agent", "Message", "Address",
           "parse_address", "uid58_encode", "uid58_decode", "ZhostError", "Undeliverable",
           "Timeout", "BrokerError", "AgentError", "Closed", "BootError", "AddressError",
           "ProtocolError", "protocol", "__version__"]
