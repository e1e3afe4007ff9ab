#!/usr/bin/env bash
# ansible-core for the Ansible layer's tests and the demo: a private venv in
# $DRIFTWATCH_TOOLS/ansible-venv, with ansible-playbook and ansible linked into
# $DRIFTWATCH_TOOLS/bin. ansible-core 2.19 is the newest line that runs on
# Debian 12's Python 3.11 (2.20 needs 3.12). Safe to run again.
set -euo pipefail
: "${DRIFTWATCH_TOOLS:?run through scripts/install-tools}"
version=2.19.14
venv="$DRIFTWATCH_TOOLS/ansible-venv"
bin="$DRIFTWATCH_TOOLS/bin"
mkdir -p "$bin"

installed() {
  [ -x "$venv/bin/ansible-playbook" ] &&
    "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("ansible-core") != sys.argv[1])' "$version" 2>/dev/null
}

if ! installed; then
  python=$(command -v python3 || true)
  if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "installing python3 and python3-venv from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3 python3-venv >/dev/null
    python=$(command -v python3)
  fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ansible-core==$version"
fi

# The unreachable-host test (and any real use over SSH) needs an ssh client.
if ! command -v ssh >/dev/null; then
  echo "installing openssh-client from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openssh-client >/dev/null
fi

for tool in ansible-playbook ansible; do
  ln -sfn "$venv/bin/$tool" "$bin/$tool"
done
"$bin/ansible-playbook" --version | sed -n 1p
