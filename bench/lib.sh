# Shared set-up and clean-up of the benchmarks (pull.sh, pod-start.sh, agent.sh,
# lifecycle.sh): sourced, never run. `. "$ROOT/bench/lib.sh" NAME.sh`; NAME.sh prefixes
# every message. See bench/README.md for what each script measures.
# shellcheck shell=bash

BENCH_NAME=$1

log() { printf '\n== %s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

# The Accept headers of a manifest request: single-platform manifests, and also indexes.
# shellcheck disable=SC2034 # used by the scripts
ACCEPT_MANIFEST='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
# shellcheck disable=SC2034
ACCEPT_INDEX="$ACCEPT_MANIFEST, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"

# ---- settings and checks ----------------------------------------------------------------

# The settings every script shares (bench/README.md); $1: the default image's name:tag.
# shellcheck disable=SC2034 # used by the scripts
bench_settings() {
    REGISTRY=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
    IMAGE=${BENCH_IMAGE:-$REGISTRY/$1}
    OUT=${BENCH_OUT:-$ROOT/bench}
    RESULTS="$OUT/results"
    PODRUN="$ROOT/target/release/podrun"
    BENCH_FS=${BENCH_FS:-loop}
    BENCH_BUILD=${BENCH_BUILD:-1}
    QUIET_WAIT=${QUIET_WAIT:-120}
}

# BENCH_FS, root ($1 says why it is needed) and a loopback registry, or die.
bench_checks() {
    [[ "$BENCH_FS" == loop || "$BENCH_FS" == dir ]] || die "BENCH_FS must be loop or dir (got '$BENCH_FS')"
    [[ $(id -u) -eq 0 ]] || die "run as root ($1)"
    case "$REGISTRY" in
        127.*:[0-9]* | localhost:[0-9]*) ;;
        *) die "the benchmark only talks to a loopback registry (got $REGISTRY)" ;;
    esac
}

# podrun's defaults, not the caller's environment: the embedded runtime, our flags.
unset_podrun_env() {
    unset PODRUN_RUNTIME PODRUN_ROOT PODRUN_RUN_ROOT PODRUN_CONFIG PODRUN_REGISTRIES_CONF PODRUN_HOSTS_DIR \
        PODRUN_SYNC_INTERVAL_MS PODRUN_AGENT_CRASH_AT
}

# One benchmark at a time on this machine (fd 8 holds the lock): two would time each other
# (and write the same result files). $1 names the other one in the message.
bench_lock() {
    exec 8>"${TMPDIR:-/tmp}/podrun-bench.lock"
    if ! flock -n 8; then
        printf '%s: another %s is running; waiting for it (up to 30 min)\n' "$BENCH_NAME" "$1" >&2
        flock -w 1800 8 || die "gave up waiting for the other $1"
    fi
}

# Re-run the script ($2, args after it) under a child subreaper unless env var $1 says it
# already is: every orphan (podman's conmons and cleanup processes, podrun's monitors should
# the agent die) is re-parented to it and reaped at once, as systemd does on a node. This
# sandbox's PID 1 reaps late, and a zombie still counts in its cgroup, which makes podman's
# pod removal wait (see bench/README.md, pod-start.sh).
run_under_subreaper() {
    local flag=$1
    shift
    [[ -z "${!flag:-}" ]] || return 0
    export "$flag=1"
    exec python3 -c '
import ctypes, os, signal, sys
if ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit(os.path.basename(sys.argv[1]) + ": prctl(PR_SET_CHILD_SUBREAPER) failed")
pid = os.fork()
if pid == 0:
    os.execvp("bash", ["bash"] + sys.argv[1:])
# Ctrl-C reaches the script itself (same process group); a TERM sent to us is passed on.
signal.signal(signal.SIGINT, lambda s, f: None)
signal.signal(signal.SIGTERM, lambda s, f: os.kill(pid, signal.SIGTERM))
while True:
    p, status = os.waitpid(-1, 0)
    if p == pid:
        code = os.waitstatus_to_exitcode(status)
        break
while True:  # reap what has already exited; anything still running goes to PID 1
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            break
    except ChildProcessError:
        break
sys.exit(code if code >= 0 else 128 - code)
' "$@"
}

# ---- tools, registry, podrun ------------------------------------------------------------

# Install with apt what is missing; each argument is command:package.
install_missing() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
    fi
}

# The registry URL of $IMAGE's manifest.
manifest_url() {
    local repo_tag=${IMAGE#*/}
    echo "http://$REGISTRY/v2/${repo_tag%%:*}/manifests/${repo_tag#*:}"
}

# Start the test registries unless they run, push the test images (cached), and die unless
# the registry has $IMAGE's manifest (asked for with the Accept header $1). Run from $ROOT.
registry_ready() {
    local code
    if ! bash scripts/registry.sh status >/dev/null 2>&1; then
        log "starting the test registries"
        bash scripts/registry.sh start 8>&- # the registry outlives us: not with our lock fd
    fi
    bash scripts/test-images.sh
    code=$(curl -s -o /dev/null -m 5 -I -w '%{http_code}' -H "Accept: $1" "$(manifest_url)" || true)
    [[ "$code" == 200 ]] || die "$IMAGE not in the registry (HEAD manifest -> $code)"
}

# Build podrun unless BENCH_BUILD=0; then each binary named ($@) must be in target/release.
build_podrun() {
    local b
    if [[ "$BENCH_BUILD" == 1 ]]; then
        log "building podrun (release)"
        cargo build --release -p podrun
    fi
    for b in "$@"; do
        [[ -x "$ROOT/target/release/$b" ]] || die "target/release/$b missing (build it: cargo build --release -p podrun)"
    done
}

# ---- the temp dir, its file systems, configs -------------------------------------------

# The temp dir and the paths below it of the pod benchmarks (made by pod_mounts).
pod_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/podrun-bench.XXXXXX")
    LOOPDEV=
    STORES="$WORK/stores"
    RUNS="$WORK/run" # both tools' run roots: a tmpfs, as /run is on a node
    PR_ROOT="$STORES/podrun/root"
    PR_RUN="$RUNS/podrun"
    PM_ROOT="$STORES/podman/root"
    PM_RUN="$RUNS/podman"
    PM_TMP="$RUNS/podman-tmp"
    CONF="$WORK/conf"
}

# Put the report section on stdin into RESULTS.md $2 between bench/$1's marker comments,
# keeping the other scripts' sections (appended when the markers are not there yet); the
# section is echoed.
put_section() {
    python3 -c '
import os, sys
name, md = sys.argv[1], sys.argv[2]
section = sys.stdin.read()[:-1]  # without the newline print() added
BEGIN, END = f"<!-- bench/{name}: begin -->", f"<!-- bench/{name}: end -->"
old = open(md).read() if os.path.exists(md) else ""
block = f"{BEGIN}\n{section}\n{END}"
if BEGIN in old and END in old:
    new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
else:
    new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + block + "\n"
open(md, "w").write(new)
print(section)
' "$1" "$2"
}

# Unmount everything mounted at or below $1 (deepest first); UMOUNT_LOG=1 names each.
umount_under() {
    local dir=$1 m
    [[ -n "$dir" && "$dir" == /* ]] || return 0
    # /proc/mounts field 2 is the mount point (spaces escaped as \040; ours have none).
    awk -v p="$dir" '$2 == p || index($2, p "/") == 1 { print $2 }' /proc/mounts |
        sort -r | while read -r m; do
            [[ "${UMOUNT_LOG:-}" != 1 ]] || printf '%s: unmounting %s\n' "$BENCH_NAME" "$m" >&2
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                printf '%s: could not unmount %s\n' "$BENCH_NAME" "$m" >&2
        done
}

# How many mounts are at or below $1.
count_mounts_under() { awk -v p="$1" '$2 == p || index($2, p "/") == 1' /proc/mounts | wc -l; }

# How many mounts are strictly below $1 or $2 (what the tools left, not our own mounts).
count_mounts_below() { awk -v s="$1" -v r="${2:-$1}" 'index($2, s "/") == 1 || index($2, r "/") == 1' /proc/mounts | wc -l; }

# BENCH_FS=loop: a fresh journaled ext4 of size $1 in a sparse file in $WORK, mounted on
# $STORES through a loop device with direct I/O (no double caching). This machine's root
# ext4 has no journal, which makes creating files right after deleting many slow (see
# bench/README.md). BENCH_FS=dir: nothing, the stores stay in the temp dir.
mount_stores() {
    [[ "$BENCH_FS" == loop ]] || return 0
    truncate -s "$1" "$WORK/fs.img"
    mkfs.ext4 -q -F -L podrun-bench "$WORK/fs.img"
    LOOPDEV=$(losetup --find --show --direct-io=on "$WORK/fs.img")
    mount "$LOOPDEV" "$STORES"
}

# The pod benchmarks' mounts and dirs: stores of size $1 (mount_stores), run roots on a
# tmpfs of size $2 (as /run is on a node).
pod_mounts() {
    mkdir -p "$STORES" "$RUNS" "$CONF"
    mount_stores "$1"
    mount -t tmpfs -o mode=0755,size="$2" podrun-bench-run "$RUNS"
    mkdir -p "$PR_ROOT" "$PR_RUN" "$PM_ROOT" "$PM_RUN" "$PM_TMP" "$RESULTS"
}

# Unmount everything below $WORK and detach the loop device (the end of a run).
release_mounts() {
    umount_under "$WORK"
    if [[ -n "$LOOPDEV" ]]; then
        losetup -d "$LOOPDEV"
        LOOPDEV=
    fi
}

# podman's configuration in $CONF, pointed at by CONTAINERS_*: containers.conf with the
# default_ulimits $1 (this machine's hard limits; shared/FIELD-NOTES.md) and no events log
# (podman's writes stay in its store); registries.conf marking the test registry insecure;
# storage.conf with runroot $2 and graphroot $3 (defaults only: every podman command passes
# --root/--runroot; they keep podman away from /var/lib/containers should a flag be
# missed); an accept-anything policy.json (for --signature-policy).
podman_conf() {
    cat >"$CONF/containers.conf" <<EOF
[containers]
default_ulimits = [$1]

[engine]
events_logger = "none"
EOF
    cat >"$CONF/registries.conf" <<EOF
unqualified-search-registries = []

[[registry]]
location = "$REGISTRY"
insecure = true
EOF
    cat >"$CONF/storage.conf" <<EOF
[storage]
driver = "overlay"
runroot = "$2"
graphroot = "$3"
EOF
    echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$CONF/policy.json"
    export CONTAINERS_CONF="$CONF/containers.conf"
    export CONTAINERS_REGISTRIES_CONF="$CONF/registries.conf"
    export CONTAINERS_STORAGE_CONF="$CONF/storage.conf"
}

# A temp dir on a tmpfs of its own (mounted as $1) with both tools' stores, run roots and
# configs below it, for the scripts that time no disk (logs.sh, watch.sh); podrun_ runs
# podrun on them.
tmpfs_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/podrun-bench.XXXXXX")
    LOOPDEV=
    mount -t tmpfs -o mode=0755,size=2g "$1" "$WORK"
    PR_ROOT="$WORK/podrun/root"
    PR_RUN="$WORK/podrun/run"
    PM_ROOT="$WORK/podman/root"
    PM_RUN="$WORK/podman/run"
    PM_TMP="$WORK/podman/tmp"
    CONF="$WORK/conf"
    mkdir -p "$PR_ROOT" "$PR_RUN" "$PM_ROOT" "$PM_RUN" "$PM_TMP" "$CONF" "$RESULTS"
    podrun_conf
    podman_conf '"nofile=20000:20000", "nproc=4096:4096"' "$PM_RUN" "$PM_ROOT"
    podrun_() {
        "$PODRUN" --root "$PR_ROOT" --run-root "$PR_RUN" --config "$CONF/podrun.toml" \
            --registries-conf "$CONF/podrun-registries.conf" "$@"
    }
}

# podrun: an empty registries.conf of its own in $CONF (loopback registries are plain HTTP
# anyway).
podrun_conf() { : >"$CONF/podrun-registries.conf"; }

# podman on our own stores.
podman_() { podman --root "$PM_ROOT" --runroot "$PM_RUN" --tmpdir "$PM_TMP" --storage-driver overlay "$@"; }

# ---- processes, pods, clean-up ----------------------------------------------------------

# The agent serving our root, if it runs: the pid in <root>/agent.lock, checked to be a
# podrun of our root (a pid can be reused).
agent_pid() {
    local p
    p=$(cat "$PR_ROOT/agent.lock" 2>/dev/null || true)
    [[ "$p" =~ ^[0-9]+$ ]] || return 0
    if tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "$PR_ROOT "; then echo "$p"; fi
}

# Wait up to $2 seconds for process $1 to be gone; fail if it is not.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [[ -d /proc/$1 ]] || return 0
        sleep 0.1
    done
    return 1
}

# Processes of ours still alive: anything naming the temp dir on its command line or
# running with its root below it (the containers). All were started by this script.
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ "$p" == "$$" || "$p" == "$BASHPID" ]] && continue
        if tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "$WORK/" ||
            [[ "$(readlink "/proc/$p/root" 2>/dev/null)" == "$WORK/"* ]]; then
            echo "$p"
        fi
    done
}

# Remove every podman pod of ours (`pod rm` given at most $1 s), then reset podman's store.
podman_teardown() {
    [[ -d "$PM_ROOT" ]] || return 0
    timeout "$1" podman --root "$PM_ROOT" --runroot "$PM_RUN" --tmpdir "$PM_TMP" --storage-driver overlay \
        pod rm -a -f -t 0 >/dev/null 2>&1 || true
    timeout 120 podman --root "$PM_ROOT" --runroot "$PM_RUN" --tmpdir "$PM_TMP" --storage-driver overlay \
        system reset -f >/dev/null 2>&1 || true
}

# SIGKILL every process of ours still alive (our_pids), saying which.
kill_our_pids() {
    local p
    for p in $(our_pids); do
        printf '%s: killing leftover process %s (%s)\n' "$BENCH_NAME" "$p" "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-100)" >&2
        kill -KILL "$p" 2>/dev/null || true
    done
}

# Remove the cgroup directories of our pods that are left (our_cgroups, deepest first).
remove_our_cgroups() {
    local p
    sleep 0.2
    for p in $(our_cgroups); do
        rmdir "$p" 2>/dev/null || printf '%s: could not remove cgroup %s\n' "$BENCH_NAME" "$p" >&2
    done
}

# The EXIT trap: on failure keep_failed RC (if the script has one), then teardown_all (if
# it has one), unmount, detach the loop device, remove the temp dir; exit with the status.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -z "${WORK:-}" ]] || {
        if ((rc != 0)) && declare -F keep_failed >/dev/null; then keep_failed "$rc"; fi
        if declare -F teardown_all >/dev/null; then teardown_all; fi
        umount_under "$WORK"
        [[ -z "$LOOPDEV" ]] || losetup -d "$LOOPDEV" 2>/dev/null || true
        rm -rf "$WORK"
    }
    exit $rc
}

# ---- a quiet machine, facts -------------------------------------------------------------

load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
busy_others() { # processes using CPU right now, other than ours (ps's %CPU is over their lifetime)
    ps -eo pid=,ppid=,pcpu=,comm= --sort=-pcpu |
        awk -v me=$$ '$1 != me && $2 != me && $3 >= 10 && n++ < 5 { print $4 " (" $3 "%)" }' |
        paste -sd, - | sed 's/,/, /g' || true
}

# Two cores: a concurrent build or test suite skews everything. Wait up to QUIET_WAIT s for
# the 1-minute load average to drop below 1.0; sets waited, LOAD_BEFORE and BUSY_BEFORE.
wait_quiet() {
    waited=0
    while ((waited < QUIET_WAIT)) && awk -v l="$(load1)" 'BEGIN { exit !(l >= 1.0) }'; do
        ((waited == 0)) && log "load average $(load1): waiting up to ${QUIET_WAIT}s for the machine to calm down"
        sleep 5
        waited=$((waited + 5))
    done
    LOAD_BEFORE="$(loadavg)"
    BUSY_BEFORE=$(busy_others)
}

# What FACT_LOAD adds after the loads: the wait, a busy machine, what else was busy.
load_notes() {
    local s=
    ((waited == 0)) || s+=" (waited ${waited}s for it to drop below 1.0)"
    ! awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l >= 1.0) }' ||
        s+="; **the machine was busy: the load average was still ≥ 1.0 after waiting ${waited}s**"
    [[ -z "$BUSY_BEFORE" ]] || s+="; other processes busy before: $BUSY_BEFORE"
    [[ -z "${BUSY_AFTER:-}" ]] || s+="; after: $BUSY_AFTER"
    printf '%s' "$s"
}

fact_date() { date -u '+%Y-%m-%d %H:%M UTC'; }

# CPUs, CPU model, memory, kernel, cgroup file system.
fact_machine() {
    echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), cgroup fs $(stat -fc %T /sys/fs/cgroup), $(fact_cgroup_attach)"
}

# How long a process's first move into a new cgroup takes (the median of 3, each after
# 0.3 s idle): every runtime pays it for each container. Without the kernel's
# favordynmods it waits for an RCU grace period (~13 ms on the development machine);
# with it, well under a millisecond. On 6.18 kernels favordynmods, once set on any
# hierarchy, stays in force until reboot although the mount option no longer shows.
fact_cgroup_attach() {
    local base=/sys/fs/cgroup/pids
    [[ -d $base ]] || base=/sys/fs/cgroup
    local dir="$base/podrun-bench-attach.$$" ms
    mkdir "$dir" 2>/dev/null || { echo "cgroup attach not measured"; return 0; }
    ms=$(python3 - "$dir" "$base" <<'PYEOF'
import os, statistics, sys, time
d, base = sys.argv[1], sys.argv[2]
took = []
for _ in range(3):
    time.sleep(0.3)
    t = time.perf_counter()
    with open(d + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
    took.append(time.perf_counter() - t)
    with open(base + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
print("%.1f" % (statistics.median(took) * 1000))
PYEOF
    ) || ms="?"
    rmdir "$dir" 2>/dev/null || true
    local fav=off
    grep -q 'cgroup.*favordynmods' /proc/self/mountinfo && fav=on
    echo "first cgroup.procs write ${ms} ms (favordynmods mount option: $fav)"
}

# The commit, and the top directories outside bench/ with uncommitted changes.
fact_rev() {
    local rev dirty
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | awk '$2 !~ /^bench\// { print $2 }' |
        cut -d/ -f1-2 | sort -u | paste -sd, - | sed 's/,/, /g' || true)
    [[ -z "$dirty" ]] || rev="$rev + uncommitted changes in: $dirty"
    echo "$rev"
}

# Where the pod benchmarks' stores and run roots were.
fact_fs() {
    if [[ "$BENCH_FS" == loop ]]; then
        echo "run roots on a tmpfs; stores on a fresh journaled ext4 on a loop device (BENCH_FS=loop)"
    else
        echo "run roots on a tmpfs; stores on $(findmnt -n -o FSTYPE -T "$WORK") (BENCH_FS=dir)"
    fi
}
