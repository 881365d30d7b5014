#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, test and demo fleetgate:
# sshd and git for the test git server, OpenSSL headers for libgit2, curl and python3
# for the control plane scripts, python3-venv for checkov (hack/tools/checkov.sh installs
# it from PyPI), promtool (Debian ships it in `prometheus`; the tests run
# `promtool check metrics` and `check rules`), chromium and chromium-driver (the browser
# tests of `kubectl fleet ui` drive headless chromium through chromedriver); iproute2,
# iputils-ping, bird2 and keepalived (the lab provider realizes fleets with them in network
# namespaces: make demo and its tests). For the image (`make image`): umoci and skopeo. For
# the test node (hack/testenv.sh start --node): libseccomp-dev (runc is built with
# seccomp), Debian's CNI plugins, iptables and conntrack (kube-proxy), ipset and
# busybox-static (the client pods' image); gnupg (gpg and its agent: the tests sign
# commits and tags with real gpg, as `git commit -S` does; ssh-keygen signs the SSH
# ones). Go and a Rust toolchain must already be there.
# --no-browser leaves chromium out (make demo does not need it).
set -euo pipefail
packages=(openssh-server openssh-client git curl openssl python3 python3-venv pkg-config libssl-dev build-essential prometheus
  iproute2 iputils-ping bird2 keepalived gnupg
  umoci skopeo libseccomp-dev containernetworking-plugins iptables conntrack ipset busybox-static)
[ "${1:-}" = "--no-browser" ] || packages+=(chromium chromium-driver)
need=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${need[@]}"
fi
command -v go >/dev/null || { echo "install-deps: Go is required to build the test control plane" >&2; exit 1; }
command -v cargo >/dev/null || { echo "install-deps: a Rust toolchain (cargo) is required" >&2; exit 1; }
