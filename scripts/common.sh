# Shared by quickstart.sh and test.sh: install, configure and build into a directory.
# Usage: flint_build BUILD_DIR [extra cmake args...]
flint_build() {
    local dir=$1
    shift
    cmake -S "$FLINT_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$(nproc)"
}

# Reserves 2 MiB hugepages (as root) so DPDK gets DMA-safe memory; without them Flint
# falls back to anonymous memory and says so.
flint_reserve_hugepages() {
    local want=${1:-1024}
    if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/nr_hugepages ]; then
        local have
        have=$(cat /proc/sys/vm/nr_hugepages)
        if [ "$have" -lt "$want" ]; then
            echo "$want" > /proc/sys/vm/nr_hugepages || true
        fi
    fi
}
