#!/usr/bin/env bash
# clients/python/tests/run-venv.sh — ctest's python-client-venv: the client's
# tests against the zhost package as pip installs it, not the source tree.
#
#   ZHOST_BUILD_DIR=build clients/python/tests/run-venv.sh [PYTHON]
#
# A venv in $ZHOST_BUILD_DIR/python-venv, made by PYTHON (default
# /usr/bin/python3; Debian's needs python3-venv), gets a wheel built from a
# copy of clients/python (checked to hold every zhost module) with its [test]
# extra: pyzmq, msgpack and pytest from PyPI. The tests then run with the
# venv's python from the venv's directory, with ZHOST_TEST_INSTALLED=1 (the
# conftest refuses a zhost imported from the source tree). The venv is kept
# while PYTHON is the same, and the wheel reinstalled only when the
# package's files changed. pip failing (no network) fails the test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=$(cd "${ZHOST_BUILD_DIR:?set ZHOST_BUILD_DIR to the build dir}" && pwd)
base=${1:-/usr/bin/python3}
venv=$build/python-venv
py=$venv/bin/python
pip=("$py" -m pip --disable-pip-version-check --no-input -q)
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE PIP_USER

stage=$(mktemp -d "$build/python-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# The venv: made again when the interpreter it came from changed.
want_base="$(readlink -f "$(command -v "$base")") $("$base" -c 'import sys; print(sys.version)')"
if [ ! -x "$py" ] || [ "$(cat "$venv/.zhost-base" 2>/dev/null)" != "$want_base" ]; then
  rm -rf "$venv"
  if ! "$base" -m venv "$venv"; then
    echo "python-client-venv: '$base -m venv' failed (Debian: apt-get install python3-venv; scripts/setup.sh does)" >&2
    exit 1
  fi
  printf '%s\n' "$want_base" >"$venv/.zhost-base"
fi

# The package as pip sees it: clients/python without its tests and without
# what in-tree builds leave behind (a stale build/lib would go into the wheel).
mkdir "$stage/pkg"
tar -C "$src" --exclude=./tests --exclude=./build --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude='*.pyc' -cf - . | tar -C "$stage/pkg" -xf -
stamp=$(cd "$stage/pkg" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)

if [ "$(cat "$venv/.zhost-stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -f "$venv/.zhost-stamp"
  "${pip[@]}" wheel --no-deps -w "$stage/dist" "$stage/pkg"
  wheel=$(echo "$stage"/dist/zhost-*-py3-none-any.whl)
  [ -f "$wheel" ] || { echo "python-client-venv: no zhost wheel in $stage/dist" >&2; exit 1; }
  # The wheel holds exactly the package's modules, and says what it needs.
  "$py" - "$wheel" "$stage/pkg/zhost" <<'EOF'
import os, re, sys, zipfile
wheel, pkg = sys.argv[1], sys.argv[2]
names = zipfile.ZipFile(wheel).namelist()
have = sorted(n for n in names if n.startswith("zhost/"))
want = sorted("zhost/" + os.path.relpath(os.path.join(d, f), pkg).replace(os.sep, "/")
              for d, _, files in os.walk(pkg) for f in files if f.endswith(".py"))
meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
requires = sorted(l.split(":", 1)[1].split(";")[0].strip() for l in meta.splitlines()
                  if l.startswith("Requires-Dist:"))
print("python-client-venv: %s: %s; Requires-Dist %s" % (os.path.basename(wheel), " ".join(have), requires))
if have != want:
    sys.exit("python-client-venv: the wheel holds %r, the source %r" % (have, want))
if not {"pyzmq", "msgpack"} <= {re.split(r"[\s<>=!~;(\[]", r, 1)[0].lower() for r in requires}:
    sys.exit("python-client-venv: the wheel does not require pyzmq and msgpack: %r" % requires)
EOF
  "${pip[@]}" uninstall -y zhost >/dev/null 2>&1 || true
  "${pip[@]}" install "$wheel[test]"
  printf '%s\n' "$stamp" >"$venv/.zhost-stamp"
fi

# From the venv's directory nothing of the source is importable: zhost is
# the installed one (checked here and by the conftest).
cd "$venv"
"$py" -c '
import os, sys, zhost, zmq, msgpack
where = os.path.realpath(zhost.__file__)
print("python-client-venv: zhost %s from %s (pyzmq %s, msgpack %s)" % (
    zhost.__version__, where, zmq.__version__, ".".join(map(str, msgpack.version))))
if not where.startswith(os.path.realpath(sys.prefix) + os.sep):
    sys.exit("python-client-venv: zhost is not the one installed in " + sys.prefix)
'
export ZHOST_TEST_INSTALLED=1
"$py" -m pytest -q -p no:cacheprovider "$here"
