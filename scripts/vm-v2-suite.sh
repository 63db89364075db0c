#!/usr/bin/env bash
# The cgroup v2 suite: runs INSIDE the VM of scripts/vm-v2.sh (cgroup2 alone at
# /sys/fs/cgroup), from this checkout. The test binaries are prebuilt on the host; their
# paths come in $VM_V2_TESTS (lines "<test target> <executable>", written by vm-v2.sh).
# PODRUN_TEST_CGROUP=v2 tells the tests that they must find cgroup v2: a test that checks
# cgroup files fails, never skips, when it is set and the hierarchy is not v2.
#
# The test registries run in the guest on loopback, serving the storage the host's
# registries filled (the host's /tmp, seen read-only below the overlay); the images are
# pushed again only when that storage is missing.
#
# With --systemd (in `scripts/vm-v2.sh --systemd`, systemd as PID 1): the systemd cgroup
# driver's tests instead, with both backends; they are #[ignore]d on ordinary hosts and
# run here with --include-ignored.
set -uo pipefail
mode=cgroupfs
if [[ "${1:-}" == --systemd ]]; then
    mode=systemd
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PODRUN_TEST_REGISTRY=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
export PODRUN_TEST_AUTH_REGISTRY=${PODRUN_TEST_AUTH_REGISTRY:-127.0.0.1:5001}
export PODRUN_TEST_STATE=${PODRUN_TEST_STATE:-/tmp/podrun-test-registry}
export PODRUN_TEST_IMAGES=${PODRUN_TEST_IMAGES:-$ROOT/.cache/test-images}
export PODRUN_TEST_CGROUP=v2

log() { printf 'vm-v2-suite: %s\n' "$*" >&2; }

[[ "$(stat -f -c %T /sys/fs/cgroup)" == cgroup2fs ]] || { log "/sys/fs/cgroup is not cgroup2"; exit 1; }
if [[ $mode == systemd && ! -d /run/systemd/system ]]; then
    log "--systemd: systemd is not PID 1 here"
    exit 1
fi

host_state="/run/vm-v2/host-tmp/${PODRUN_TEST_STATE#/tmp/}"
if [[ "$PODRUN_TEST_STATE" == /tmp/* && -d "$host_state" ]]; then
    mkdir -p "$PODRUN_TEST_STATE"
    mount --bind "$host_state" "$PODRUN_TEST_STATE"
fi
bash scripts/registry.sh start || exit 1
if ! curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$PODRUN_TEST_REGISTRY/v2/busybox/manifests/latest"; then
    bash scripts/test-images.sh || exit 1
fi

declare -A exe=()
while read -r name path; do exe[$name]=$path; done <<<"${VM_V2_TESTS:-}"

failed=()
passed=0
test_args=()
[[ $mode == systemd ]] && test_args=(--include-ignored)
suite() { # label env... -- target test-name...
    local label=$1 start=$SECONDS envs=() target bin rc
    shift
    while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
    shift
    target=$1
    shift
    bin=${exe[$target]:-}
    if [[ -z "$bin" ]]; then
        log "$label: no test binary for target $target"
        failed+=("$label")
        return
    fi
    printf '\n=== v2: %s\n' "$label" >&2
    for t in "$@"; do
        env "${envs[@]}" "$bin" --exact "$t" --test-threads=1 --color never "${test_args[@]}"
        rc=$?
        if ((rc == 0)); then ((passed++)); else failed+=("$label: $t"); fi
    done
    printf '=== v2: %s (%ss)\n' "$label" $((SECONDS - start)) >&2
}

if [[ $mode == systemd ]]; then
suite "runtime cgroups (systemd)" -- cgroups \
    a_systemd_pod_slice_gets_the_limits_and_is_stopped
suite "systemd driver (embedded)" PODRUN_RUNTIME=embedded -- cgroup_drivers \
    a_pod_is_a_slice_and_its_container_a_scope_with_their_limits \
    each_qos_class_has_its_slice \
    a_besteffort_pod_slice_is_stopped_with_what_runs_in_it \
    an_oom_kill_in_a_scope_is_reported_and_the_container_restarted \
    a_crash_loop_in_scopes_restarts_until_the_pod_is_deleted \
    a_killed_monitors_pod_leaves_no_unit \
    the_cgroup_driver_is_checked_at_start
suite "systemd driver (crun)" PODRUN_RUNTIME=crun -- cgroup_drivers \
    a_pod_is_a_slice_and_its_container_a_scope_with_their_limits \
    each_qos_class_has_its_slice \
    a_besteffort_pod_slice_is_stopped_with_what_runs_in_it \
    an_oom_kill_in_a_scope_is_reported_and_the_container_restarted \
    a_crash_loop_in_scopes_restarts_until_the_pod_is_deleted \
    a_killed_monitors_pod_leaves_no_unit
else
suite "runtime cgroups" -- cgroups \
    creates_limits_fills_and_removes_a_burstable_pod_cgroup \
    a_failed_create_leaves_nothing_behind
suite "podrun run (embedded)" PODRUN_RUNTIME=embedded -- run \
    two_containers_share_an_empty_dir_and_the_pod_exit_code_is_returned \
    the_pod_has_its_files_shm_memory_volumes_and_qos_cgroup \
    a_containers_limits_are_in_its_cgroup_files
suite "podrun run (crun)" PODRUN_RUNTIME=crun -- run \
    two_containers_share_an_empty_dir_and_the_pod_exit_code_is_returned \
    the_pod_has_its_files_shm_memory_volumes_and_qos_cgroup \
    a_containers_limits_are_in_its_cgroup_files
suite "monitor (embedded)" PODRUN_RUNTIME=embedded -- monitor \
    an_oom_kill_is_recorded \
    containers_outlive_a_killed_monitor_and_the_guard_cleans_up
suite "lifecycle (embedded)" PODRUN_RUNTIME=embedded -- lifecycle \
    out_of_memory_is_oom_killed
for backend in embedded crun; do
suite "cgroupfs driver ($backend)" PODRUN_RUNTIME=$backend -- cgroup_drivers \
    each_qos_class_has_its_cgroupfs_parent \
    an_oom_kill_in_a_cgroupfs_cgroup_is_reported_and_the_container_restarted \
    a_crash_loop_in_cgroupfs_cgroups_restarts_until_the_pod_is_deleted
done
# Not here: lifecycle's crash_loop_backs_off_exponentially, which measures the gaps
# between starts to 1.5 s; under software emulation each restart's image pull alone
# takes 1-1.6 s. The crash loop is cgroup_drivers' (restarts and cleanup, no timing).
fi

bash scripts/registry.sh stop >/dev/null 2>&1
# Every test removed its pods: no cgroup may be left in the whole hierarchy (nothing
# but the tests made any in this VM).
if [[ $mode == systemd ]]; then
    # systemd's own cgroups stay; of podrun's only the QoS parent slices may (as
    # kubelet's kubepods.slice stays), and no podrun unit but them may be loaded.
    left=$(find /sys/fs/cgroup/podrun.slice -mindepth 1 -type d 2>/dev/null |
        grep -vxE '/sys/fs/cgroup/podrun.slice/podrun-(burstable|besteffort).slice')
    units=$(systemctl list-units --all --plain --no-legend 'podrun-*' | awk '{print $1}' |
        grep -vxE 'podrun-(burstable|besteffort).slice')
    if [[ -n "$units" ]]; then
        log "units left after the suite:"
        printf '  %s\n' $units >&2
        failed+=("units left")
    fi
else
left=$(find /sys/fs/cgroup -mindepth 1 -type d)
fi
if [[ -n "$left" ]]; then
    log "cgroups left after the suite:"
    printf '  %s\n' $left >&2
    failed+=("cgroups left")
fi
if ((${#failed[@]})); then
    log "$passed passed, ${#failed[@]} FAILED:"
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
log "$passed passed"
