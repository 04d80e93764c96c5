#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through ctest:
# unit tests on a ThreadSanitizer build, unit and functional tests on an
# AddressSanitizer+UndefinedBehaviorSanitizer build, then both on the release build.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    the release build only
set -euo pipefail
FLINT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$FLINT_ROOT/scripts/common.sh"

quick=0
for arg in "$@"; do
    case $arg in
        --quick) quick=1 ;;
        *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
    esac
done

"$FLINT_ROOT/scripts/pkgdep.sh"
flint_reserve_hugepages 1024

run_suite() {
    local dir=$1
    shift
    ctest --test-dir "$dir" --output-on-failure --timeout 600 -j "$(nproc)" "$@"
}

if [ $quick -eq 0 ]; then
    # Functional tests stay out: DPDK itself is not built with TSan.
    echo "== ThreadSanitizer build (unit tests)"
    flint_build "$FLINT_ROOT/build-tsan" -DFLINT_TSAN=ON -DFLINT_BUILD_BENCH=OFF
    TSAN_OPTIONS=halt_on_error=1 run_suite "$FLINT_ROOT/build-tsan" -E '^functional_'

    echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
    flint_build "$FLINT_ROOT/build-asan" -DFLINT_ASAN=ON -DFLINT_BUILD_BENCH=OFF
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_suite "$FLINT_ROOT/build-asan"
fi
echo "== Release build"
flint_build "$FLINT_ROOT/build"
run_suite "$FLINT_ROOT/build"
