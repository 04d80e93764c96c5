#!/usr/bin/env bash
# Installs what is missing, builds, and runs nvmf_tgt on config/default.json in the
# foreground (Ctrl-C stops it). Extra arguments go to nvmf_tgt.
set -euo pipefail
FLINT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$FLINT_ROOT/scripts/common.sh"

"$FLINT_ROOT/scripts/pkgdep.sh"
flint_build "$FLINT_ROOT/build" -DFLINT_BUILD_TESTS=OFF
flint_reserve_hugepages 1024
echo "Starting nvmf_tgt; in another shell try: $FLINT_ROOT/scripts/rpc.py framework_get_reactors"
exec "$FLINT_ROOT/build/app/nvmf_tgt/nvmf_tgt" -m 0x3 -c "$FLINT_ROOT/config/default.json" "$@"
