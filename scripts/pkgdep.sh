#!/usr/bin/env bash
# Installs the Debian packages Flint's build, tests and benchmarks need. Does nothing when
# they are all present. Run as root on Debian 12.
set -euo pipefail

packages=(
    build-essential cmake ninja-build pkg-config git
    libdpdk-dev libnuma-dev libjsoncpp-dev libaio-dev libibverbs-dev librdmacm-dev
    googletest libgtest-dev libgmock-dev libbenchmark-dev
    python3
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "pkgdep.sh: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
fi
echo "pkgdep.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
