#!/usr/bin/env bash
# Prometheus, Alertmanager, promtool and amtool from Debian 12 (Prometheus
# 2.42, Alertmanager 0.25). Used by scripts/check-monitoring (which also needs
# python3, from 10-python3.sh) and the alerting
# end-to-end test. Installs nothing when the tools are already there; Debian's
# packages are not started as services by this script (the tests start their
# own instances on loopback).
set -euo pipefail

# Pinned to Debian 12's lines; the rule tests and e2e settings were verified on these.
PROMETHEUS_VERSION='2.42.*'
ALERTMANAGER_VERSION='0.25.*'

have_all() {
  command -v prometheus >/dev/null &&
    command -v promtool >/dev/null &&
    command -v prometheus-alertmanager >/dev/null &&
    command -v amtool >/dev/null
}

if have_all; then
  echo "prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}'), alertmanager and amtool already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "10-prometheus.sh: apt-get not found; install prometheus, promtool, prometheus-alertmanager and amtool yourself" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
  "prometheus=$PROMETHEUS_VERSION" "prometheus-alertmanager=$ALERTMANAGER_VERSION" >/dev/null

# The Debian units would otherwise bind 9090/9093 on a real systemd host.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now prometheus prometheus-alertmanager prometheus-node-exporter >/dev/null 2>&1 || true
fi

have_all || { echo "10-prometheus.sh: tools still missing after apt-get install" >&2; exit 1; }
echo "installed prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}')"
