"""docker/docker-compose.yml without a Docker engine (docs/deploy.md): the
compose files pass `docker-compose config`, and the topology the compose
file describes runs, service by service, in network namespaces.

The run reads docker/docker-compose.yml and the last stage of
docker/Dockerfile (its ENV, ENTRYPOINT and HEALTHCHECK) and does what the
engine would: one namespace per service, all on one bridge (test_mesh's
switched_hosts), /etc/netns/<ns>/hosts naming every service (`ip netns
exec` mounts it over /etc/hosts, as Docker's DNS answers service names),
and each service's entrypoint + command run with the image's environment
and the service's. The only changes are where the image keeps things:
programs (/usr/local/bin) are found on PATH with the build dir first, the
Python client (/opt/zhost/python) is the repo's clients/python/, and each
service's /run/zhost is a dir of its own made as the image makes it
(mode 0700, empty). depends_on `service_healthy` waits for the Dockerfile's
HEALTHCHECK command to pass in that service's namespace. Needs root (skips
without, like test_mesh).
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BUILD_DIR, Broker, broker_env
from test_mesh import switched_hosts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE = os.path.join(REPO, "docker", "docker-compose.yml")
COMPOSE_CURVE = os.path.join(REPO, "docker", "docker-compose.curve.yml")
DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile")
HEALTH_DEADLINE = 20.0  # seconds for a broker to pass its healthcheck


def compose_config(*files):
    return subprocess.run(["docker-compose"] + [a for f in files for a in ("-f", f)]
                          + ["config", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60, cwd=REPO)


def test_docker_compose_accepts_the_compose_files():
    """`docker-compose config` (1.29, Debian's; scripts/setup.sh installs
    it) accepts docker/docker-compose.yml alone and with the CURVE override."""
    if not shutil.which("docker-compose"):
        pytest.skip("no docker-compose (scripts/setup.sh installs it)")
    r = compose_config(COMPOSE)
    assert r.returncode == 0, r.stderr
    r = compose_config(COMPOSE, COMPOSE_CURVE)
    assert r.returncode == 0, r.stderr


def dockerfile_run_stage(path=DOCKERFILE):
    """(env, entrypoint, healthcheck argv) of the Dockerfile's last stage."""
    instructions, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if line.startswith("#") or (not cur and not line):
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            instructions.append(cur + line)
            cur = ""
    env, entrypoint, health = {}, None, None
    for ins in instructions:
        word, _, rest = ins.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            env, entrypoint, health = {}, None, None
        elif word == "ENV":
            for item in shlex.split(rest):
                k, _, v = item.partition("=")
                env[k] = v
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "HEALTHCHECK":
            health = json.loads(rest[rest.index("CMD ") + 4:])
    return env, entrypoint, health


def service_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def dependencies(svc):
    """{service: condition} of a service's depends_on (list or map form)."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {d: (c or {}).get("condition", "service_started") for d, c in deps.items()}


def start_order(services):
    order, left = [], dict(services)
    for _ in range(len(services)):   # bounded: one service placed per round
        ready = [n for n, s in left.items() if all(d in order for d in dependencies(s))]
        assert ready, "depends_on cycle among %r" % list(left)
        order.append(ready[0])
        del left[ready[0]]
    return order


def spawned_names(argv):
    return [argv[i + 1].split("=", 1)[0] for i, a in enumerate(argv[:-1]) if a == "--spawn"]


@pytest.fixture
def compose_hosts():
    """The compose file's services, each in a namespace of its own whose
    /etc/hosts names every service; the /etc/netns dirs are removed after."""
    yaml = pytest.importorskip("yaml", reason="python3-yaml (scripts/setup.sh installs it)")
    with open(COMPOSE) as f:
        services = yaml.safe_load(f)["services"]
    addrs = {name: "10.213.2.%d" % (i + 1) for i, name in enumerate(services)}
    made = []
    with switched_hosts(addrs) as net:
        try:
            for name, ns in net["hosts"].items():
                d = os.path.join("/etc/netns", ns)
                os.makedirs(d)
                made.append(d)
                with open(os.path.join(d, "hosts"), "w") as f:
                    f.write("127.0.0.1 localhost\n")
                    for other, addr in addrs.items():
                        f.write("%s %s\n" % (addr, other))
            yield services, net["hosts"]
        finally:
            for d in made:
                shutil.rmtree(d, ignore_errors=True)
            try:
                os.rmdir("/etc/netns")   # only if nothing else is there
            except OSError:
                pass


def test_the_compose_topology_runs_in_namespaces(compose_hosts, tmp_path):
    """What `docker compose up` shows: host-a and host-b start and turn
    healthy (`zhost-ctl ping` in each), then the client on host-a pings the
    echo on host-b three times, each answer crossing the peer link, and
    exits 0; `docker compose down` (SIGTERM to tini, to the broker) ends
    each broker with status 0."""
    services, hosts = compose_hosts
    image_env, image_entrypoint, healthcheck = dockerfile_run_stage()
    assert image_entrypoint and healthcheck, "Dockerfile's last stage lacks ENTRYPOINT/HEALTHCHECK"
    for prog in ("zhost-broker", "zhost-ctl", "zhost-echo", "zhost-ping"):
        if not os.access(os.path.join(BUILD_DIR, prog), os.X_OK):
            pytest.skip("no %s in %s (build the examples and tools)" % (prog, BUILD_DIR))
    if not os.access(image_entrypoint[0], os.X_OK):
        pytest.skip("no %s (scripts/setup.sh installs tini)" % image_entrypoint[0])

    def image_paths(name):
        """The image's paths as this machine has them, for service name."""
        return [("/usr/local/bin/", BUILD_DIR + "/"),
                ("/opt/zhost/python", os.path.join(REPO, "clients", "python")),
                ("/run/zhost", str(tmp_path / name / "run" / "zhost"))]

    def mapped(name, text):
        for image, here in image_paths(name):
            if text.startswith(image):
                return here + text[len(image):]
        return text

    def environment(name, svc):
        env = broker_env()    # this machine's, without ZHOST_*
        env["PATH"] = BUILD_DIR + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        env["TINI_SUBREAPER"] = "1"   # tini reaps as PID 1 there; as a subreaper here
        for k, v in list(image_env.items()) + list(service_env(svc).items()):
            env[k] = mapped(name, v)
        return env

    def argv_of(name, svc):
        entry = svc.get("entrypoint", image_entrypoint)
        command = svc.get("command") or []
        assert isinstance(entry, list) and isinstance(command, list), \
            "%s: keep entrypoint and command as lists" % name
        return ["ip", "netns", "exec", hosts[name]] + [mapped(name, w) for w in entry + command]

    def health(name, svc):
        return subprocess.run(["ip", "netns", "exec", hosts[name]]
                              + [mapped(name, w) for w in healthcheck],
                              env=environment(name, svc), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=15)

    def wait_healthy(name, svc):
        """depends_on service_healthy: the healthcheck passes (polled), and,
        since this test probes at once where the engine's first probe comes
        an interval (5 s) after start, each proc the broker spawns is ready."""
        deadline = time.monotonic() + HEALTH_DEADLINE
        r = health(name, svc)
        while r.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # poll interval
            r = health(name, svc)
        assert r.returncode == 0, "%s not healthy: %s%s" % (name, r.stdout, r.stderr)
        assert healthcheck[-1] == "ping", healthcheck
        for proc in spawned_names(argv_of(name, svc)):
            argv = ["ip", "netns", "exec", hosts[name]] + [
                mapped(name, w) for w in healthcheck[:-1]] + ["status", proc]
            while True:
                s = subprocess.run(argv, env=environment(name, svc), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=15)
                if "status: ready" in s.stdout or time.monotonic() >= deadline:
                    break
                time.sleep(0.1)  # poll interval
            assert "status: ready" in s.stdout, (name, proc, s.stdout, s.stderr)

    brokers, clients = {}, {}
    try:
        for name in start_order(services):
            svc = services[name]
            for dep, condition in dependencies(svc).items():
                if condition == "service_healthy":
                    wait_healthy(dep, services[dep])
            argv, env = argv_of(name, svc), environment(name, svc)
            if "entrypoint" in svc:   # a program of its own: the client
                clients[name] = subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True, timeout=60)
                continue
            rt = mapped(name, "/run/zhost")
            os.makedirs(os.path.dirname(rt))
            os.mkdir(rt, 0o700)           # as the image: install -d -m 0700 /run/zhost
            os.chmod(rt, 0o700)
            brokers[name] = Broker(argv, rt, tmp_path / ("%s.log" % name), env)

        for name, b in brokers.items():
            b.wait_ready()
            assert b.advertise == ["tcp://%s:7100" % name], b.advertise
            assert b.frontend == ["tcp://0.0.0.0:7100"], b.frontend
        # the client: three answers from host-b's echo, each across the link
        assert list(clients) == ["client"], clients
        r = clients["client"]
        assert r.returncode == 0, r.stdout + r.stderr
        replies = [l for l in r.stdout.splitlines() if l.startswith("reply from ")]
        assert len(replies) == 3, r.stdout
        for seq, line in enumerate(replies, 1):
            assert line.startswith("reply from echo.echo@tcp://host-b:7100: seq=%d " % seq), line
            assert line.endswith('"echo.echo@tcp://host-b:7100"'), line
        assert r.stdout.splitlines()[-1].startswith("3 sent, 3 answered"), r.stdout
        # the healthcheck in each host's namespace, after the traffic too
        for name in brokers:
            h = health(name, services[name])
            assert h.returncode == 0, h.stdout + h.stderr
            assert h.stdout.startswith("pong from tcp://%s:7100" % name), h.stdout
        # docker compose down: SIGTERM to PID 1 (tini), which hands it on
        for b in brokers.values():
            b.signal(signal.SIGTERM)
        for name, b in brokers.items():
            rc = b.wait(b.linger + 10.0)
            assert rc == 0, "%s exited %r on SIGTERM\n%s" % (name, rc, b.stderr_tail())
    finally:
        problems = []
        for b in brokers.values():
            problems += b.stop()
    assert not problems, problems
