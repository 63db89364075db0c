#!/usr/bin/env bash
# Makes a cgroup v1 "hybrid" machine usable by crun (as root; idempotent).
#
# On a hybrid machine /sys/fs/cgroup is a tmpfs holding v1 hierarchies plus a cgroup2
# mount at /sys/fs/cgroup/unified. A controller that no v1 hierarchy has bound stays
# available on that cgroup2 mount, and crun then refuses every container:
#   "cgroups in hybrid mode not supported, drop all controllers from cgroupv2".
# On this kind of machine the leftover controller is hugetlb. Binding each leftover
# controller to its own v1 hierarchy (/sys/fs/cgroup/<name>, as systemd would) empties
# the cgroup2 controller list. runc and libcontainer work either way.
#
# Nothing to do on a pure v1 or a pure v2 (unified) machine. The mounts do not survive
# a reboot: run this before the tests (scripts/test.sh) or at boot.
set -euo pipefail

log() { printf 'setup-cgroups: %s\n' "$*" >&2; }

unified=/sys/fs/cgroup/unified
fstype=$(stat -f -c %T /sys/fs/cgroup 2>/dev/null || echo unknown)
if [[ "$fstype" != "tmpfs" ]] || ! [[ -r "$unified/cgroup.controllers" ]]; then
    exit 0 # not hybrid
fi

read -r -a leftover < "$unified/cgroup.controllers" || true
if ((${#leftover[@]} == 0)); then
    exit 0 # already done
fi
if [[ $(id -u) -ne 0 ]]; then
    log "cgroup2 still holds controllers (${leftover[*]}): run as root to bind them to v1"
    exit 1
fi
for c in "${leftover[@]}"; do
    # A controller enabled in the v2 subtree is in use there and cannot move.
    if grep -qw "$c" "$unified/cgroup.subtree_control" 2>/dev/null; then
        log "controller $c is enabled in $unified/cgroup.subtree_control; cannot move it to v1"
        exit 1
    fi
    dir="/sys/fs/cgroup/$c"
    mkdir -p "$dir"
    if ! mountpoint -q "$dir"; then
        mount -t cgroup -o "$c" cgroup "$dir"
        log "bound controller $c to a v1 hierarchy at $dir"
    fi
done

remaining=$(cat "$unified/cgroup.controllers")
if [[ -n "$remaining" ]]; then
    log "cgroup2 still holds controllers: $remaining"
    exit 1
fi
