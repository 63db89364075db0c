#!/usr/bin/env bash
# podrun's whole test command (what CI runs, through .ci/run):
#
#   1. scripts/deps.sh          install missing Debian packages / rust components
#   2. scripts/registry.sh      start the test registries (stopped again on exit)
#   3. scripts/test-images.sh   build (cached) and push the test images
#   4. cargo fmt --all --check
#      scripts/check-graph.py   (no crate uses one the layering of ARCHITECTURE.md forbids)
#      cargo clippy --workspace --all-targets -- -D warnings
#      cargo test --workspace   (embedded OCI backend; extra arguments go to cargo test)
#      cargo test -p podrun --test run --test monitor --test agent   again with PODRUN_RUNTIME=crun
#      scripts/vm-v2.sh         the cgroup v2 suite in a qemu VM (scripts/vm-v2-suite.sh)
#      scripts/vm-v2.sh --systemd   the systemd cgroup driver's suite, systemd as the VM's PID 1
#
# All steps of 4 run even when one fails; the exit status is non-zero if any failed.
# Registries that were already running before this script started are left running
# (so are they when PODRUN_KEEP_REGISTRY=1); otherwise they are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

export PODRUN_TEST_REGISTRY=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
export PODRUN_TEST_AUTH_REGISTRY=${PODRUN_TEST_AUTH_REGISTRY:-127.0.0.1:5001}
export PODRUN_TEST_STATE=${PODRUN_TEST_STATE:-/tmp/podrun-test-registry}
export PODRUN_TEST_IMAGES="$ROOT/.cache/test-images"

section() { printf '\n=== %s\n' "$*" >&2; }

section "dependencies"
bash scripts/deps.sh
bash scripts/setup-cgroups.sh

stop_registries=1
if [[ "${PODRUN_KEEP_REGISTRY:-0}" == 1 ]] || bash scripts/registry.sh status >/dev/null 2>&1; then
    stop_registries=0
fi
cleanup() {
    local rc=$?
    if ((stop_registries)); then
        bash scripts/registry.sh stop || true
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "registries ($PODRUN_TEST_REGISTRY, auth $PODRUN_TEST_AUTH_REGISTRY)"
bash scripts/registry.sh start

section "test images"
bash scripts/test-images.sh

failed=()
step() { # name command...
    local name=$1 start=$SECONDS
    shift
    section "$name"
    if "$@"; then
        printf '=== %s: ok (%ss)\n' "$name" $((SECONDS - start)) >&2
    else
        printf '=== %s: FAILED (%ss)\n' "$name" $((SECONDS - start)) >&2
        failed+=("$name")
    fi
}
step "cargo fmt" cargo fmt --all --check
step "crate graph" python3 scripts/check-graph.py
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
test_log=$(mktemp)
run_tests() {
    PODRUN_RUNTIME=embedded cargo test --workspace "$@" 2>&1 | tee -a "$test_log"
    return "${PIPESTATUS[0]}"
}
# The whole suite runs with the embedded OCI backend (libcontainer, the default);
# the end-to-end suites that run containers run again with the crun binary.
run_crun_tests() {
    PODRUN_RUNTIME=crun cargo test -p podrun --test run --test monitor --test agent "$@" 2>&1 | tee -a "$test_log"
    return "${PIPESTATUS[0]}"
}
step "cargo test (embedded backend)" run_tests "$@"
step "cargo test (crun backend: run, monitor, agent)" run_crun_tests "$@"
# The cgroup v2 suite in a qemu VM (this machine is v1 hybrid): Debian's kernel with
# cgroup2 alone at /sys/fs/cgroup, the test binaries built above (~40 s under TCG).
step "cgroup v2 suite (VM, scripts/vm-v2.sh)" bash scripts/vm-v2.sh
# The same VM booting systemd as PID 1: the systemd cgroup driver, both backends.
step "systemd cgroup driver suite (VM, scripts/vm-v2.sh --systemd)" bash scripts/vm-v2.sh --systemd

# One closing line for the whole suite (cargo prints one per test binary, and the
# last is usually a doc-test run with nothing in it).
totals=$(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped", p, f, i }' "$test_log")
rm -f "$test_log"

if ((${#failed[@]})); then
    section "FAILED: ${failed[*]}"
    echo "tests: $totals"
    exit 1
fi
section "all passed"
echo "tests: $totals"
