#!/usr/bin/env bash
# kubectl with built-in kustomize, for the kubernetes layer's `render` test
# (`kubectl kustomize`). Any kubectl >= 1.14 will do; the test overlay is
# written for kustomize v2+. An existing kubectl (the image has 1.32) is kept;
# otherwise Debian 12's kubernetes-client (kubectl 1.20) is installed.
set -euo pipefail
if command -v kubectl >/dev/null 2>&1; then
  echo "kubectl present: $(kubectl version --client 2>/dev/null | head -1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "kubernetes-client=1.20.5+really1.20.2-1.1+deb12u1"
echo "installed kubectl: $(kubectl version --client | head -1)"
