#!/usr/bin/env bash
# Volumes' cost: podrun vs podman kube play, side by side, in one run. See bench/README.md.
# Writes its own section of bench/RESULTS.md (between marker comments) and
# bench/results/volumes.json.
#
#   bench/volumes.sh                        N=10 start+delete runs of each
#   N=3 QUIET_WAIT=0 BENCH_BUILD=0 BENCH_OUT=/tmp/x bench/volumes.sh   a quick try
#
# Timed, each N times in rotation, every start followed by its (timed) deletion, all on
# the host's network (hostNetwork: true: bench/network.sh measures the network; here both
# tools do the same volume work and nothing else differs):
#   podrun, no volume         `podrun run -d` of a one-container pod
#   podrun, volumes           the same pod with one volume of each kind podman also has:
#                             configMap, secret, emptyDir, hostPath,
#                             persistentVolumeClaim, each mounted by the container (the
#                             ConfigMap, Secret and claim in the same file, applied
#                             each time; podman gets its Secret and claim once, before)
#   podrun, every kind        those plus downwardAPI, projected and image volumes, which
#                             podman kube play does not have
#   podman kube play, no volume / volumes   the same two files
# The claims' data (a podrun claim, a podman named volume) outlives each delete on both
# sides, as a claim's does. Everything of ours is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" volumes.sh

N=${N:-10}
bench_settings busybox:latest
bench_checks "it mounts volumes and makes pods"
unset_podrun_env
bench_lock benchmark
cd "$ROOT"
install_missing podman:podman conmon:conmon catatonit:catatonit crun:crun python3:python3
registry_ready "$ACCEPT_MANIFEST"
build_podrun podrun podrun-monitor podrun-pause
START=$SECONDS

WORK=$(mktemp -d "${TMPDIR:-/tmp}/podrun-bench-vol.XXXXXX")
# The run roots on a tmpfs, as /run is on a node (pod-start.sh does the same).
mkdir -p "$WORK/runs"
mount -t tmpfs -o mode=0755 podrun-bench-runs "$WORK/runs"
PR_ROOT="$WORK/podrun-root"
PR_RUN="$WORK/runs/podrun"
PM_ROOT="$WORK/podman-root"
PM_RUN="$WORK/runs/podman"
PM_TMP="$WORK/podman-tmp"
CONF="$WORK/conf"
mkdir -p "$CONF" "$PR_ROOT" "$PR_RUN" "$PM_ROOT" "$PM_RUN" "$PM_TMP" "$WORK/yaml" "$WORK/host"
echo "from the host" >"$WORK/host/file.txt"
podman_conf '"nofile=20000:20000", "nproc=4096:4096"' "$PM_RUN" "$PM_ROOT"
podrun_conf

# The objects: the ConfigMap (conf_yaml), the Secret and claim (kept_yaml).
conf_yaml() {
    cat <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: $1-conf}
data:
  app.properties: |
    color=blue
    lives=3
---
EOF
}
kept_yaml() {
    cat <<EOF
apiVersion: v1
kind: Secret
metadata: {name: $1-creds}
data: {password: czNjcmV0}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1-data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF
}
# pod_yaml NAME KIND: KIND none (no volume), common (podman's kinds), all (every kind).
# The secret volume says optional: false: podman 4.3 dereferences it unset (a panic in
# kube.VolumeFromSecret).
pod_yaml() {
    local name=$1 kind=$2
    cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
  labels: {app: bench}
spec:
  terminationGracePeriodSeconds: 0
  restartPolicy: Never
  hostNetwork: true
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
EOF
    [[ $kind == none ]] && return
    cat <<EOF
    volumeMounts:
    - {name: conf, mountPath: /etc/conf}
    - {name: creds, mountPath: /etc/creds}
    - {name: cache, mountPath: /cache}
    - {name: host, mountPath: /host}
    - {name: data, mountPath: /data}
EOF
    [[ $kind == all ]] && cat <<EOF
    - {name: info, mountPath: /etc/info}
    - {name: all-in-one, mountPath: /etc/all}
    - {name: tools, mountPath: /tools}
EOF
    cat <<EOF
  volumes:
  - {name: conf, configMap: {name: $name-conf}}
  - {name: creds, secret: {secretName: $name-creds, optional: false}}
  - {name: cache, emptyDir: {}}
  - {name: host, hostPath: {path: $WORK/host, type: Directory}}
  - {name: data, persistentVolumeClaim: {claimName: $name-data}}
EOF
    [[ $kind == all ]] && cat <<EOF
  - name: info
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
  - name: all-in-one
    projected:
      sources:
      - configMap: {name: $name-conf}
      - secret: {name: $name-creds}
  - name: tools
    image: {reference: "$IMAGE", pullPolicy: IfNotPresent}
EOF
    return 0
}
# podrun gets every object with its pod, each time (an apply of what is there already);
# podman 4.3 refuses to play a claim whose volume exists ("volume already exists"), so
# its Secret and claim are played once, before, and its timed file has the ConfigMap
# and the pod.
pod_yaml vol-none none >"$WORK/yaml/podrun-none.yaml"
{ conf_yaml vol-common; kept_yaml vol-common; echo ---; pod_yaml vol-common common; } >"$WORK/yaml/podrun-common.yaml"
{ conf_yaml vol-all; kept_yaml vol-all; echo ---; pod_yaml vol-all all; } >"$WORK/yaml/podrun-all.yaml"
pod_yaml pm-none none >"$WORK/yaml/podman-none.yaml"
{ conf_yaml pm-common; pod_yaml pm-common common; } >"$WORK/yaml/podman-common.yaml"
kept_yaml pm-common >"$WORK/yaml/podman-kept.yaml"

podrun_() { "$PODRUN" --root "$PR_ROOT" --run-root "$PR_RUN" --registries-conf "$CONF/podrun-registries.conf" "$@"; }

# podman makes libpod_parent cgroups (v1) and leaves them: ours are removed on exit.
LIBPOD_BEFORE=$(find /sys/fs/cgroup -maxdepth 3 -name libpod_parent | wc -l)

cleanup() {
    set +e
    for p in vol-none vol-common vol-all; do podrun_ delete pod "$p" >/dev/null 2>&1; done
    [[ -f "$PR_ROOT/agent.lock" ]] && kill "$(cat "$PR_ROOT/agent.lock")" 2>/dev/null
    sleep 0.5
    for f in none common; do podman_ kube down "$WORK/yaml/podman-$f.yaml" >/dev/null 2>&1; done
    podman_ pod rm -af >/dev/null 2>&1
    podman_ rm -af >/dev/null 2>&1
    podman_ volume rm -af >/dev/null 2>&1
    podman_ secret rm -a >/dev/null 2>&1
    grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "$WORK"
    ((LIBPOD_BEFORE)) || find /sys/fs/cgroup -depth -path '*/libpod_parent*' -type d -exec rmdir {} + 2>/dev/null
}
trap cleanup EXIT

log "pulling $IMAGE into both stores"
podrun_ pull "$IMAGE" >/dev/null
podman_ pull --tls-verify=false --signature-policy "$CONF/policy.json" "$IMAGE" >/dev/null
podman_ kube play "$WORK/yaml/podman-kept.yaml" >/dev/null

# One untimed run of each, checking that the container sees its volumes.
# (podman 4.3 writes a Secret's data into its volume still base64-encoded: its file
# is checked to be there, not its bytes.)
check() { # what output secret
    [[ "$2" == *"color=blue"*"$3"*"from the host"* ]] || die "$1: the container does not see its volumes: $2"
}
see='cat /etc/conf/app.properties /etc/creds/password /host/file.txt; echo x > /cache/x; echo y > /data/y'
podrun_ run -d -f "$WORK/yaml/podrun-all.yaml" >/dev/null
check "podrun" "$(podrun_ exec vol-all -- sh -c "$see; cat /etc/info/labels /etc/all/password; test -e /tools/bin/busybox")" s3cret
podrun_ delete pod vol-all >/dev/null
out=$(podman_ kube play "$WORK/yaml/podman-common.yaml" 2>&1 </dev/null) || { printf '%s\n' "$out" >&2; die "podman kube play failed"; }
check "podman" "$(podman_ exec pm-common-main sh -c "$see")" czNjcmV0
podman_ kube down "$WORK/yaml/podman-common.yaml" >/dev/null

export PODRUN PR_ROOT PR_RUN WORK N
cat >"$WORK/driver.py" <<'PYEOF'
import json, os, subprocess, sys, time

e = os.environ
work, n = e["WORK"], int(e["N"])
podrun = [e["PODRUN"], "--root", e["PR_ROOT"], "--run-root", e["PR_RUN"],
          "--registries-conf", work + "/conf/podrun-registries.conf"]
podman = ["podman", "--root", work + "/podman-root", "--runroot", work + "/runs/podman",
          "--tmpdir", work + "/podman-tmp", "--storage-driver", "overlay"]
y = lambda n: work + "/yaml/" + n + ".yaml"
tools = [
    ("podrun, no volume", podrun + ["run", "-d", "-f", y("podrun-none")], podrun + ["delete", "pod", "vol-none"]),
    ("podrun, volumes", podrun + ["run", "-d", "-f", y("podrun-common")], podrun + ["delete", "pod", "vol-common"]),
    ("podrun, every kind", podrun + ["run", "-d", "-f", y("podrun-all")], podrun + ["delete", "pod", "vol-all"]),
    ("podman kube play, no volume", podman + ["kube", "play", y("podman-none")], podman + ["kube", "down", y("podman-none")]),
    ("podman kube play, volumes", podman + ["kube", "play", y("podman-common")], podman + ["kube", "down", y("podman-common")]),
]

def run(argv):
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("FAILED: %s\n%s" % (" ".join(argv), p.stdout.decode(errors="replace")))
    return dt

res = {name: {"start": [], "delete": []} for name, _, _ in tools}
for i in range(n):
    order = tools[i % len(tools):] + tools[:i % len(tools)]
    for name, start, delete in order:
        res[name]["start"].append(run(start))
        res[name]["delete"].append(run(delete))
        time.sleep(0.2)
    print("driver: run %d/%d done" % (i + 1, n), file=sys.stderr, flush=True)
json.dump(res, open(work + "/raw.json", "w"), indent=1)
PYEOF

wait_quiet
LOAD_BEFORE=$(loadavg)
log "timed runs: N=$N of each (load average $LOAD_BEFORE)"
python3 "$WORK/driver.py"
LOAD_AFTER=$(loadavg)
mkdir -p "$RESULTS"
cp "$WORK/raw.json" "$RESULTS/volumes.json"

export FACT_DATE FACT_MACHINE FACT_REV FACT_TOOLS FACT_LOAD FACT_ELAPSED FACT_N
FACT_DATE=$(fact_date)
FACT_MACHINE=$(fact_machine)
FACT_REV="$(fact_rev); binary built $(date -u -r "$PODRUN" '+%Y-%m-%d %H:%M UTC')"
FACT_TOOLS="$(podman --version)"
FACT_LOAD="load average $LOAD_BEFORE before the timed runs, $LOAD_AFTER after them"
FACT_ELAPSED=$((SECONDS - START))
FACT_N=$N
python3 - "$RESULTS/volumes.json" <<'EOF' | put_section volumes.sh "$OUT/RESULTS.md"
import json, os, statistics, sys
r = json.load(open(sys.argv[1]))
f = lambda k: os.environ["FACT_" + k]
med = statistics.median
ms = lambda v: "%.0f" % (v * 1000)
w = print
w("# Volumes: a pod with one volume of each kind, podrun vs podman kube play\n")
w("Generated by `bench/volumes.sh` (see `bench/README.md`). Raw data: `bench/results/volumes.json`.\n")
w("- **date**: %s" % f("DATE"))
w("- **machine**: %s" % f("MACHINE"))
w("- **podrun**: %s" % f("REV"))
w("- **tools**: %s" % f("TOOLS"))
w("- **file systems**: stores on the disk (ext4 on /dev/vda), run roots on a tmpfs")
w("- **runs**: %s of each, in rotation; each start (`podrun run -d`, `podman kube play`) followed by its timed deletion; hostNetwork pods (the network is bench/network.sh's); \"volumes\" is configMap, secret, emptyDir, hostPath and persistentVolumeClaim (objects in the same file), \"every kind\" adds downwardAPI, projected and image" % f("N"))
w("- **machine load**: %s" % f("LOAD"))
w("- **whole script**: %s s\n" % f("ELAPSED"))
w("| what | start median ms | min | max | delete median ms |")
w("|---|---:|---:|---:|---:|")
for name in ["podrun, no volume", "podrun, volumes", "podrun, every kind", "podman kube play, no volume", "podman kube play, volumes"]:
    s, d = r[name]["start"], r[name]["delete"]
    w("| %s | %s | %s | %s | %s |" % (name, ms(med(s)), ms(min(s)), ms(max(s)), ms(med(d))))
w("")
pv = med(r["podrun, volumes"]["start"]); pn = med(r["podrun, no volume"]["start"])
mv = med(r["podman kube play, volumes"]["start"]); mn = med(r["podman kube play, no volume"]["start"])
w("- podman kube play / podrun, the pod with volumes: **%.1f×** (target ≥ 5×)" % (mv / pv))
w("- the volumes' own cost (with − without): podrun **%+.0f ms**, podman %+.0f ms" % ((pv - pn) * 1000, (mv - mn) * 1000))
w("- every kind (adds downwardAPI, projected, image) − no volume, podrun: %+.0f ms" % ((med(r["podrun, every kind"]["start"]) - pn) * 1000))
EOF
log "wrote the volumes section of $OUT/RESULTS.md and $RESULTS/volumes.json"
