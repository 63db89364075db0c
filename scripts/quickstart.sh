#!/usr/bin/env bash
# The README's first command: install what podrun needs, start the local test
# registry with its images, build podrun, pull an image, list it, and run a pod.
# The registry is left running (stop it with scripts/registry.sh stop).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
bash scripts/deps.sh
bash scripts/setup-cgroups.sh
bash scripts/registry.sh start
bash scripts/test-images.sh
cargo build --release -p podrun
REGISTRY=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
PODRUN="target/release/podrun --root ${PODRUN_ROOT:-/var/lib/podrun}"
set -x
$PODRUN pull "$REGISTRY/busybox:latest"
$PODRUN images
$PODRUN run -f examples/emptydir-pod.yaml
