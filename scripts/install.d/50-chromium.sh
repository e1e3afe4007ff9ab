#!/usr/bin/env bash
# Headless Chromium (Debian's package) for the status page tests: they load
# the page, dump the rendered DOM and take a screenshot. Debian 12 ships
# Chromium through its security archive, where old builds are removed when a
# new one lands, so the pin below is tried first and the current candidate of
# the same package is the fallback.
set -euo pipefail
PINNED="156.0.8078.79-1~deb12u1"
if command -v chromium >/dev/null 2>&1; then
  echo "chromium present: $(chromium --version 2>/dev/null || true)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq --no-install-recommends "chromium=$PINNED" fonts-dejavu-core; then
  echo "chromium $PINNED is gone from the archive; installing the current Debian build" >&2
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi
echo "installed $(chromium --version)"
