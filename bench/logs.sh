#!/usr/bin/env bash
# What logging a busy container costs the process that writes its log: podrun's monitor
# (the CRI log format, rotated by kubelet's rules at container_log_max_size 10Mi with 5
# files, the rotated ones gzip-compressed in a short-lived child of the monitor) against
# podman's conmon (k8s-file log driver, max-size 10mb), the same busybox container writing
# about 10 MB/s of 1 KiB lines, in one run. See bench/README.md. Writes its own section
# of bench/RESULTS.md and bench/results/logs.json.
#
#   bench/logs.sh                          DURATION=20 s measured per run, after 3 s
#   DURATION=5 BENCH_BUILD=0 QUIET_WAIT=0 BENCH_OUT=/tmp/x bench/logs.sh   a quick try
#
# Three runs, one after the other: podrun with rotation (10Mi, 5 files), podrun with
# rotation out of reach (container_log_max_size 100Gi: the log only written), podman.
# CPU: user + system time of the writer process over the window (/proc/PID/stat), and,
# for podrun, of the gzip children it reaped (cutime + cstime); as % of one CPU.
# Everything lives in a temp dir on a tmpfs (logs included, so no disk is timed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" logs.sh

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
bench_settings busybox:latest
bench_checks "it mounts a tmpfs and runs pods"
bench_lock "benchmark"
unset_podrun_env
build_podrun podrun podrun-monitor podrun-pause
command -v podman >/dev/null || die "podman is not installed (apt-get install podman)"

tmpfs_workdir podrun-bench-logs

teardown_all() {
    podrun_ delete pod logbench --grace-period 0 >/dev/null 2>&1 || true
    local a
    a=$(agent_pid)
    [[ -z "$a" ]] || { kill "$a" 2>/dev/null || true; wait_gone "$a" 10 || true; }
    podman_ rm -f -t 0 logbench >/dev/null 2>&1 || true
    podman_teardown 60
    kill_our_pids
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1024 lines of 1023 'a's and a newline (1 MiB), then 0.1 s: at most 10 MiB/s.
WRITER='l=$(head -c 1023 /dev/zero | tr "\0" a); while :; do i=0; while [ $i -lt 1024 ]; do echo "$l"; i=$((i+1)); done; sleep 0.1; done'

# user+system clock ticks of $1 (own, and with its reaped children when $2 = all).
ticks() {
    awk -v all="${2:-own}" '{ sub(/.*\) /, ""); t = $12 + $13; if (all == "all") t += $14 + $15; print t }' "/proc/$1/stat"
}
HZ=$(getconf CLK_TCK)

# Measure writer pid $1 over DURATION s after WARMUP s: own %CPU and with children.
measure() {
    sleep "$WARMUP"
    local o0 a0 o1 a1 t0 t1
    o0=$(ticks "$1") a0=$(ticks "$1" all) t0=$(date +%s.%N)
    sleep "$DURATION"
    o1=$(ticks "$1") a1=$(ticks "$1" all) t1=$(date +%s.%N)
    python3 -c "import sys; o0,a0,o1,a1,hz,t0,t1 = map(float, sys.argv[1:]); w = t1 - t0
print('%.2f %.2f %.1f' % ((o1-o0)/hz/w*100, (a1-a0)/hz/w*100, w))" "$o0" "$a0" "$o1" "$a1" "$HZ" "$t0" "$t1"
}

POD="$CONF/pod.yaml"
cat >"$POD" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: logbench
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: writer
    image: $IMAGE
    command: ["sh", "-c", '$WRITER']
EOF

# podrun: $1 = max size, $2 = label. Prints "own all window bytes files".
run_podrun() {
    cat >"$CONF/podrun.toml" <<EOF
container_log_max_size = "$1"
container_log_max_files = 5
EOF
    podrun_ run -d -f "$POD" >/dev/null
    local mon dir bytes files m
    mon=$(pgrep -f "podrun-monitor --plan $PR_RUN/" | head -1)
    [[ -n "$mon" ]] || die "no monitor for the pod"
    m=$(measure "$mon")
    dir=$(find "$PR_RUN" -type d -name writer | head -1)
    files=$(find "$dir" -type f | wc -l)
    bytes=$(find "$dir" -type f -name '*.gz' -exec zcat {} + | wc -c)
    bytes=$((bytes + $(find "$dir" -type f ! -name '*.gz' -exec cat {} + | wc -c)))
    podrun_ delete pod logbench --grace-period 0 >/dev/null
    local a
    a=$(agent_pid)
    [[ -z "$a" ]] || { kill "$a"; wait_gone "$a" 10 || true; }
    echo "$m $bytes $files"
}

run_podman() {
    podman_ run -d --name logbench --log-driver k8s-file --log-opt max-size=10mb \
        "$IMAGE" sh -c "$WRITER" >/dev/null
    local conmon m
    conmon=$(podman_ inspect --format '{{.State.ConmonPid}}' logbench)
    m=$(measure "$conmon")
    podman_ rm -f -t 0 logbench >/dev/null
    echo "$m"
}

log "pulling $IMAGE into both stores"
podrun_ pull "$IMAGE" >/dev/null
podman_ pull -q "$IMAGE" >/dev/null
wait_quiet
START=$(date +%s)
log "podrun, rotation at 10Mi (${DURATION}s)"
read -r PR_OWN PR_ALL PR_W PR_BYTES PR_FILES < <(run_podrun 10Mi)
log "podrun, rotation out of reach (${DURATION}s)"
read -r PN_OWN PN_ALL PN_W PN_BYTES PN_FILES < <(run_podrun 100Gi)
log "podman, k8s-file max-size 10mb (${DURATION}s)"
read -r PM_OWN PM_ALL PM_W < <(run_podman)
END=$(date +%s)
BUSY_AFTER=$(busy_others)

python3 - "$RESULTS/logs.json" <<EOF
import json
r = {
  "facts": {
    "date": "$(fact_date)", "machine": "$(fact_machine)", "podrun": "git $(fact_rev)",
    "podman": "$(podman --version)", "conmon": "$(conmon --version 2>/dev/null | head -1)",
    "command": "DURATION=$DURATION bash bench/logs.sh", "whole script": "$((END - START)) s",
    "machine load": "load average $LOAD_BEFORE before$(load_notes)",
  },
  "duration": $DURATION,
  "runs": {
    "podrun (rotation at 10Mi, 5 files)": {"own": $PR_OWN, "with_children": $PR_ALL, "window": $PR_W, "bytes": $PR_BYTES, "files": $PR_FILES},
    "podrun (no rotation reached)": {"own": $PN_OWN, "with_children": $PN_ALL, "window": $PN_W, "bytes": $PN_BYTES, "files": $PN_FILES},
    "podman conmon (k8s-file, max-size 10mb)": {"own": $PM_OWN, "with_children": $PM_ALL, "window": $PM_W},
  },
}
json.dump(r, open("$RESULTS/logs.json", "w"), indent=1)
EOF

python3 - "$RESULTS/logs.json" <<'EOF' | put_section logs.sh "$OUT/RESULTS.md"
import json, sys
r = json.load(open(sys.argv[1]))
f = r["facts"]
out = []
w = out.append
w("# Container logs: the writer's CPU under a container writing ~10 MB/s\n")
w("Generated by `bench/logs.sh` (see `bench/README.md`). Raw data: `bench/results/logs.json`.\n")
for k in ["date", "machine", "podrun", "podman", "conmon", "command", "whole script", "machine load"]:
    w(f"- **{k}**: {f[k]}")
w("")
w("The same busybox container writes 1 KiB lines, 1 MiB then a 0.1 s pause, for a window of "
  f"{r['duration']} s after 3 s; the writer process's user + system time over the window, as "
  "% of one CPU, from `/proc/PID/stat` (for podrun's monitor also with the gzip children it "
  "reaped). Everything is on a tmpfs.\n")
w("| run | writer | CPU % (own) | CPU % (with children) | MB written | files at the end |")
w("|---|---|---:|---:|---:|---:|")
for name, x in r["runs"].items():
    writer = "conmon" if "podman" in name else "podrun-monitor"
    mb = "%.0f" % (x["bytes"] / 1e6) if "bytes" in x else "—"
    files = str(x.get("files", "—"))
    w(f"| {name} | {writer} | {x['own']:.2f} | {x['with_children']:.2f} | {mb} | {files} |")
w("")
runs = r["runs"]
rot = runs["podrun (rotation at 10Mi, 5 files)"]
plain = runs["podrun (no rotation reached)"]
cm = runs["podman conmon (k8s-file, max-size 10mb)"]
cost = rot["with_children"] - plain["with_children"]
w(f"- rotation's own cost (with the gzip children): {rot['with_children']:.2f} − {plain['with_children']:.2f} = **{cost:.2f}% of a CPU** (target ≤ 1%: {'met' if cost <= 1 else 'not met'})")
w(f"- podrun's monitor with rotation vs conmon: **{rot['with_children']:.2f}%** vs **{cm['with_children']:.2f}%**")
w(f"- MB written: bytes of every log file at the end, the gzip'd ones uncompressed (the oldest beyond 5 files are gone), so a lower bound of what the container wrote")
print("\n".join(out))
EOF
