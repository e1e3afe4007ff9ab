#!/usr/bin/env bash
# sshd for the repo-sync tests over ssh:// (key auth + known_hosts checking).
# The tests start their own sshd on a loopback port with a throwaway config;
# the system service is not wanted, so it is kept from starting during install.
# Debian 12's openssh-server (1:9.2p1); the exact revision follows Debian's
# security updates, so it is not pinned further.
set -euo pipefail
if [ -x /usr/sbin/sshd ]; then
  echo "sshd present: /usr/sbin/sshd"
  exit 0
fi
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends openssh-server >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server
fi
echo "installed openssh-server (sshd, not started)"
