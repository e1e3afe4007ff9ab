#!/usr/bin/env bash
# python3 (standard library only) runs the plugins shipped in probes/
# (files-drift, sysctl-drift) and their tests. Debian 12 ships 3.11.
set -euo pipefail
if command -v python3 >/dev/null 2>&1; then
  echo "python3 present: $(python3 --version)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3
echo "installed $(python3 --version)"
