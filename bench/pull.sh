#!/usr/bin/env bash
# Pull benchmark: podrun vs podman vs skopeo, side by side, on the local test registry.
# See bench/README.md. Writes bench/RESULTS.md and bench/results/*.json.
#
#   bench/pull.sh                 N=5 cold runs per tool, WARM_N=20 "already present" runs
#   N=10 WARM_N=50 bench/pull.sh  more runs
#   BENCH_OUT=/tmp/x N=1 WARM_N=2 QUIET_WAIT=0 bench/pull.sh   a quick try that leaves bench/ alone
#
# Every cold run pulls into an EMPTY store (a fresh directory under a temp dir made for
# this run; anything podman left mounted there is unmounted first). The temp dir is
# removed on exit, whatever happens.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/bench/pull.sh"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" pull.sh
UMOUNT_LOG=1 # say what is unmounted: here only what a tool left behind

# ---- helpers; `pull.sh __fresh DIR` is what hyperfine's --prepare runs -------------

reset_dirs() { # dirs... -> each unmounted, removed and recreated empty
    local d
    for d in "$@"; do
        umount_under "$d"
        rm -rf "$d"
        mkdir -p "$d"
    done
}

# Make $1 a fresh empty directory WITHOUT deleting the old one: it is unmounted and moved
# to $1.trash/ (removed after all timed runs). Why: this machine's ext4 has no journal, and
# then ext4 will not reuse an inode freed in the last minute or so (recently_deleted() in
# fs/ext4/ialloc.c); it reads each such inode while looking for a free one. Removing the
# previous run's ~20000 files right before a pull makes that pull allocate its own 20000
# inodes in O(freed x allocated) kernel time: seconds of system time, and the run-to-run
# spread of a benchmark that deletes between runs goes from 5 s to 17 s. Then flush what
# the previous run left dirty, so its writeback is not charged to the next one.
fresh_dir() {
    local d=$1
    if [[ -e "$d" ]]; then
        umount_under "$d"
        mkdir -p "$d.trash"
        mv "$d" "$d.trash/$(date +%s%N)"
    fi
    mkdir -p "$d"
    sync
}

if [[ "${1:-}" == __fresh ]]; then
    fresh_dir "$2"
    exit 0
fi

# ---- settings -------------------------------------------------------------------------
N=${N:-5}
WARM_N=${WARM_N:-20}
bench_settings big:latest # REGISTRY, IMAGE, OUT, RESULTS, PODRUN, BENCH_FS, QUIET_WAIT (lib.sh)

[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ "$WARM_N" =~ ^[1-9][0-9]*$ ]] || die "WARM_N must be a positive integer (got '$WARM_N')"
bench_checks "podman --root and overlay mounts need it"
bench_lock bench/pull.sh
START=$SECONDS

# ---- tools ----------------------------------------------------------------------------
install_missing podman:podman hyperfine:hyperfine skopeo:skopeo python3:python3 curl:curl \
    docker-registry:docker-registry htpasswd:apache2-utils

# ---- registry + images ----------------------------------------------------------------
cd "$ROOT"
registry_ready "$ACCEPT_MANIFEST"

# ---- podrun ---------------------------------------------------------------------------
BENCH_BUILD=1 build_podrun podrun # always built (pull.sh has no BENCH_BUILD=0)

# ---- work dir, configs ----------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/podrun-bench.XXXXXX")
LOOPDEV=
trap cleanup EXIT # lib.sh
trap 'exit 130' INT TERM

# The cold runs' stores are kept until the end (see fresh_dir): about 1.1 GB per run of
# the three tools together for big:latest, plus the already-present stores.
need_kb=$(((N + 3) * 1100 * 1024 + 2 * 1048576))
avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
((avail_kb > need_kb)) || die "need ~$((need_kb / 1048576)) GiB free under $WORK, have $((avail_kb / 1048576)) GiB"

# Where the stores live. BENCH_FS=loop (default): a fresh journaled ext4 in a sparse
# image file under $WORK, on a loop device with direct I/O (no double caching). Why not
# the temp dir itself: on a machine whose ext4 has no journal (like this one), ext4
# refuses to reuse inodes freed in the last 1-6 minutes and scans past each of them on
# every allocation (recently_deleted() in fs/ext4/ialloc.c), so any bulk delete on the
# machine shortly before - a previous run, a test suite - adds seconds of system time to
# unpacking the 20000 small files (measured here: 5 s -> 11-17 s). A fresh journaled
# ext4 is what a real node has and gives stable numbers. BENCH_FS=dir: the temp dir as it is.
if [[ "$BENCH_FS" == loop ]]; then STORES="$WORK/fs"; else STORES="$WORK/stores"; fi
mkdir -p "$STORES"
mount_stores "${need_kb}K"

CONF="$WORK/conf"
mkdir -p "$CONF" "$RESULTS"
rm -f "$RESULTS/cold.json" "$RESULTS/present.json"
# podman's nofile limit only matters for running containers, harmless for pull.
podman_conf '"nofile=20000:20000"' "$STORES/podman-default/run" "$STORES/podman-default/root"
podrun_conf

podrun_cmd() { # store-dir
    echo "$PODRUN --root $1/root --run-root $1/run --registries-conf $CONF/podrun-registries.conf pull $IMAGE"
}
podman_cmd() { # store-dir
    echo "podman --root $1/root --runroot $1/run --tmpdir $1/tmp --storage-driver overlay pull --tls-verify=false --signature-policy $CONF/policy.json $IMAGE"
}
skopeo_cmd() { # dest-dir
    echo "skopeo --policy $CONF/policy.json copy --src-tls-verify=false docker://$IMAGE oci:$1/oci:big"
}

# ---- sanity: each tool pulls once (not timed); this also fills the "already present"
# stores and warms the page cache with the registry's blobs.
log "priming: one untimed pull per tool"
for tool in podrun podman skopeo; do
    dir="$STORES/warm-$tool"
    reset_dirs "$dir"
    if ! out=$(eval "$("${tool}_cmd" "$dir")" 2>&1 </dev/null); then
        printf '%s\n' "$out" >&2
        die "$tool failed to pull $IMAGE (output above)"
    fi
    printf '%s: %s\n' "$tool" "$(printf '%s' "$out" | tail -n 1)" >&2
done
"$PODRUN" --root "$STORES/warm-podrun/root" images >&2

# ---- a quiet machine? ------------------------------------------------------------------
wait_quiet

# ---- cold: every run into an empty store ---------------------------------------------
log "cold pulls: $N runs each (load average $LOAD_BEFORE)"
C="$STORES/cold"
hyperfine --style basic --runs "$N" \
    --export-json "$RESULTS/cold.json" \
    --command-name 'podrun pull' \
    --prepare "bash $SELF __fresh $C" \
    "$(podrun_cmd "$C")" \
    --command-name 'podman pull' \
    --prepare "bash $SELF __fresh $C" \
    "$(podman_cmd "$C")" \
    --command-name 'skopeo copy' \
    --prepare "bash $SELF __fresh $C" \
    "$(skopeo_cmd "$C")"

# ---- already present: the stores from the priming pulls ------------------------------
log "already-present pulls: $WARM_N runs each"
hyperfine --style basic --runs "$WARM_N" --warmup 2 \
    --export-json "$RESULTS/present.json" \
    --command-name 'podrun pull (present)' "$(podrun_cmd "$STORES/warm-podrun")" \
    --command-name 'podman pull (present)' "$(podman_cmd "$STORES/warm-podman")"

LOAD_AFTER="$(loadavg)"
log "removing the cold runs' stores"
reset_dirs "$C"
umount_under "$C.trash"
rm -rf "$C" "$C.trash"

# ---- leftovers ------------------------------------------------------------------------
# Mounts the tools left below the stores (the loop file system itself does not count).
left_by_tools=$(count_mounts_below "$STORES")
# podman: a proper reset of its store, then our own unmount sweep of everything.
d="$STORES/warm-podman"
podman --root "$d/root" --runroot "$d/run" --tmpdir "$d/tmp" --storage-driver overlay \
    system reset -f >/dev/null 2>&1 || true
release_mounts
mounts_under=$(count_mounts_under "$WORK")
loops_left=$(losetup -a | grep -c -- "$WORK" || true)
podrun_mounts=$(grep -c podrun /proc/mounts || true)
if ((podrun_mounts > 0)); then
    podrun_mounts="$podrun_mounts (not ours: $(awk '/podrun/ { print $2 }' /proc/mounts | head -n 3 | paste -sd' ' - || true) …)"
fi
stray=$(pgrep -af -- "$WORK" | grep -v "^$$ " | grep -v pgrep || true)
[[ -z "$stray" ]] || log "stray processes: $stray"

# ---- facts + report -------------------------------------------------------------------
export FACT_DATE FACT_NPROC FACT_MEM FACT_KERNEL FACT_CPU FACT_DISK FACT_FS FACT_PODMAN \
    FACT_SKOPEO FACT_HYPERFINE FACT_RUSTC FACT_REV FACT_REGISTRY FACT_IMAGE FACT_SIZE \
    FACT_MOUNTS FACT_PODRUN_MOUNTS FACT_STRAY FACT_N FACT_WARM_N FACT_CGROUP FACT_ELAPSED FACT_LOAD
FACT_DATE=$(fact_date)
FACT_NPROC=$(nproc)
FACT_MEM=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
FACT_KERNEL=$(uname -sr)
FACT_CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
grep -qw sha_ni /proc/cpuinfo && FACT_CPU="$FACT_CPU (SHA-NI)" || FACT_CPU="$FACT_CPU (no SHA-NI)"
src=$(findmnt -n -o SOURCE -T "$WORK" || true)
FACT_FS=$(findmnt -n -o FSTYPE,OPTIONS -T "$WORK" | awk '{ print $1 " (" $2 ")" }' || true)
if [[ -e "/proc/fs/ext4/$(basename "$src")" ]] && ! compgen -G "/proc/fs/jbd2/$(basename "$src")-*" >/dev/null; then
    FACT_FS="$FACT_FS, no journal"
fi
if [[ "$BENCH_FS" == loop ]]; then
    FACT_FS="fresh ext4 (journaled, mkfs defaults) in a sparse file on $(findmnt -n -o FSTYPE -T "$WORK") $src, loop device with direct I/O (BENCH_FS=loop); the host file system: $FACT_FS"
else
    FACT_FS="$src $FACT_FS (BENCH_FS=dir)"
fi
dev=$(basename "${src%%[*}")
parent=$(lsblk -n -o PKNAME "/dev/$dev" 2>/dev/null | head -n 1 || true)
blk=${parent:-$dev}
FACT_DISK="/dev/$blk"
if [[ -r /sys/block/$blk/queue/rotational ]]; then
    FACT_DISK="$FACT_DISK, rotational=$(cat "/sys/block/$blk/queue/rotational")"
    [[ -e /sys/block/$blk/device/driver ]] &&
        FACT_DISK="$FACT_DISK, driver $(basename "$(readlink -f "/sys/block/$blk/device/driver")")"
    [[ $blk == vd* ]] && FACT_DISK="$FACT_DISK (virtio block device: the rotational flag says nothing about the host's storage)"
fi
FACT_CGROUP=$(stat -fc %T /sys/fs/cgroup)
FACT_PODMAN=$(podman --version)
FACT_SKOPEO=$(skopeo --version)
FACT_HYPERFINE=$(hyperfine --version)
FACT_RUSTC=$(rustc --version 2>/dev/null || echo unknown)
FACT_REV=$(fact_rev)
FACT_REGISTRY="$REGISTRY ($(docker-registry --version 2>/dev/null | head -n 1 || echo docker-registry))"
FACT_IMAGE=$IMAGE
FACT_SIZE=$(curl -s -m 5 -H "Accept: $ACCEPT_MANIFEST" "$(manifest_url)" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); l=m["layers"]; print("%d layers, %.1f MB compressed" % (len(l), sum(x["size"] for x in l)/1e6))' || echo "?")
FACT_MOUNTS="$left_by_tools left by the tools below the stores before the final sweep; $mounts_under below the temp dir after it; loop devices still backed by it: $loops_left"
FACT_PODRUN_MOUNTS=$podrun_mounts
FACT_STRAY=${stray:-none}
FACT_N=$N
FACT_WARM_N=$WARM_N
FACT_ELAPSED=$((SECONDS - START))
FACT_LOAD="load average $LOAD_BEFORE before the timed runs, $LOAD_AFTER after them"
((waited == 0)) || FACT_LOAD="$FACT_LOAD (waited ${waited}s for it to drop below 1.0)"
[[ -z "$BUSY_BEFORE" ]] || FACT_LOAD="$FACT_LOAD; other processes busy before: $BUSY_BEFORE"

python3 - "$RESULTS/cold.json" "$RESULTS/present.json" "$OUT/RESULTS.md" <<'EOF'
import json, os, statistics, sys

cold = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
present = {r["command"]: r for r in json.load(open(sys.argv[2]))["results"]}
f = lambda k: os.environ["FACT_" + k]

def stats(r):
    t = r["times"]
    return statistics.median(t), min(t), max(t), r.get("user", 0) + r.get("system", 0)

pr, pm, sk = (stats(cold[c]) for c in ("podrun pull", "podman pull", "skopeo copy"))
wr, wm = (stats(present[c]) for c in ("podrun pull (present)", "podman pull (present)"))
r_podman = pm[0] / pr[0]
r_skopeo = pr[0] / sk[0]
ok = lambda b: "**met**" if b else "**not met**"

out = []
w = out.append
w("# Pull benchmark results\n")
w("Generated by `bench/pull.sh` (see `bench/README.md`). Raw hyperfine data: "
  "`bench/results/cold.json`, `bench/results/present.json`.\n")
w("## Machine\n")
for k, v in [
    ("date", f("DATE")),
    ("CPUs (nproc)", f("NPROC")),
    ("CPU", f("CPU")),
    ("memory", f("MEM")),
    ("kernel", f("KERNEL")),
    ("cgroup fs", f("CGROUP")),
    ("disk", f("DISK")),
    ("filesystem of the stores", f("FS")),
    ("podrun", "git " + f("REV") + ", `cargo build --release`, " + f("RUSTC")),
    ("podman", f("PODMAN") + " (overlay driver, native overlay)"),
    ("skopeo", f("SKOPEO")),
    ("hyperfine", f("HYPERFINE")),
    ("registry", f("REGISTRY") + ", plain HTTP on loopback"),
    ("image", "`" + f("IMAGE") + "`: " + f("SIZE")),
    ("runs", f"{f('N')} per cold command, {f('WARM_N')} per already-present command (after 2 warm-ups)"),
    ("whole script", f"{f('ELAPSED')} s (after the build)"),
    ("machine load", f("LOAD")),
]:
    w(f"- **{k}**: {v}")
w("")
w("Each number below is from one run of the script on this machine. On 2 cores a concurrent "
  "build or test suite slows every tool (see *machine load* above); the podrun/skopeo ratio "
  "is the most sensitive, as skopeo's run is the shortest.\n")
w("## Cold pull (empty store every run)\n")
w("| command | median s | min s | max s | CPU s (user+sys, mean) |")
w("|---|---:|---:|---:|---:|")
for name, s in [("podrun pull (pull + verify + unpack)", pr),
                ("podman pull (pull + verify + unpack)", pm),
                ("skopeo copy to oci: (download + verify, no unpack)", sk)]:
    w(f"| {name} | {s[0]:.2f} | {s[1]:.2f} | {s[2]:.2f} | {s[3]:.2f} |")
w("")
w("## Already present (image already in the store)\n")
w("| command | median ms | min ms | max ms | CPU ms (user+sys, mean) |")
w("|---|---:|---:|---:|---:|")
for name, s in [("podrun pull", wr), ("podman pull", wm)]:
    w(f"| {name} | {s[0]*1000:.0f} | {s[1]*1000:.0f} | {s[2]*1000:.0f} | {s[3]*1000:.0f} |")
w("")
w("## Ratios (of medians)\n")
w(f"- podman pull / podrun pull = **{r_podman:.2f}×** (above 1: podrun is faster)")
w(f"- podrun pull / skopeo copy = **{r_skopeo:.2f}×** (how much unpacking costs podrun over a plain download)")
w(f"- already present: podrun **{wr[0]*1000:.0f} ms**, podman **{wm[0]*1000:.0f} ms**")
w("")
w("## Targets\n")
w("| target | measured | verdict |")
w("|---|---|---|")
w(f"| podrun at least 2× faster than `podman pull` | podman/podrun = {r_podman:.2f}× | {ok(r_podman >= 2)} |")
w(f"| podrun within 2× of `skopeo copy` | podrun/skopeo = {r_skopeo:.2f}× | {ok(r_skopeo <= 2)} |")
w(f"| already-present pull under 50 ms | {wr[0]*1000:.0f} ms | {ok(wr[0] < 0.050)} |")
w("")
w("## After the run\n")
w(f"- mounts left under the benchmark's temp dir: {f('MOUNTS')}")
w(f"- lines of /proc/mounts naming podrun: {f('PODRUN_MOUNTS')}")
w(f"- processes still naming the temp dir: {f('STRAY')}")
w("")
# Replace only our own section of RESULTS.md (between the markers), keeping the other
# benchmarks' sections (bench/pod-start.sh). A file without our markers is an old
# pull-only RESULTS.md: its text before any other section is ours.
BEGIN, END = "<!-- bench/pull.sh: begin -->", "<!-- bench/pull.sh: end -->"
md = sys.argv[3]
old = open(md).read() if os.path.exists(md) else ""
block = BEGIN + "\n" + "\n".join(out) + "\n" + END
if BEGIN in old and END in old:
    new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
else:
    rest = old[old.index("<!-- bench/"):] if "<!-- bench/" in old else ""
    new = block + "\n" + ("\n" + rest if rest else "")
open(md, "w").write(new)
print("\n".join(out))
EOF
log "wrote $OUT/RESULTS.md"
