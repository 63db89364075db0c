#!/usr/bin/env bash
# Pod networking's cost: podrun vs podman and the CNI reference plugins, side by side, in
# one run. See bench/README.md. Writes its own section of bench/RESULTS.md (between marker
# comments) and bench/results/network.json.
#
#   bench/network.sh                        N=10 start+delete runs of each
#   N=3 QUIET_WAIT=0 BENCH_BUILD=0 BENCH_OUT=/tmp/x bench/network.sh   a quick try
#
# Timed, each N times in rotation, every start followed by its (timed) deletion (each pod
# publishes one hostPort, so the port-mapping rules are part of every network's work):
#   podrun, default network   `podrun run -d` of a one-container pod (podrun's in-process
#                             bridge network on its own bridge and /24 for the bench)
#   podrun, hostNetwork       the same pod with hostNetwork: true (no network to make)
#   podrun, CNI conflist      the same pod through the reference plugins (bridge +
#                             host-local + portmap), a conflist in the config directory
#   podman kube play          the same pod, podman's default network
# and N bare CNI cycles of that conflist: ADD then DEL of bridge and portmap, run as
# libcni runs them, against a network namespace of our own (the plugins' own time).
# Everything of ours is removed on exit: pods, namespaces, bridges, rules, leases.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" network.sh

N=${N:-10}
bench_settings busybox:latest
bench_checks "it makes network namespaces, bridges and iptables rules"
unset_podrun_env
bench_lock benchmark
cd "$ROOT"
install_missing podman:podman conmon:conmon catatonit:catatonit crun:crun python3:python3
[[ -x /usr/lib/cni/bridge ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q containernetworking-plugins >&2
registry_ready "$ACCEPT_MANIFEST"
build_podrun podrun podrun-monitor podrun-pause
START=$SECONDS

WORK=$(mktemp -d "${TMPDIR:-/tmp}/podrun-bench-net.XXXXXX")
# The run roots on a tmpfs, as /run is on a node (pod-start.sh does the same).
mkdir -p "$WORK/runs"
mount -t tmpfs -o mode=0755 podrun-bench-runs "$WORK/runs"
PR_ROOT="$WORK/podrun-root"
PR_RUN="$WORK/runs/podrun"
# The CNI runs have an agent (and so a config) of their own: an agent keeps the
# configuration it started with.
PR_ROOT_CNI="$WORK/podrun-root-cni"
PR_RUN_CNI="$WORK/runs/podrun-cni"
PM_ROOT="$WORK/podman-root"
PM_RUN="$WORK/runs/podman"
PM_TMP="$WORK/podman-tmp"
CONF="$WORK/conf"
mkdir -p "$CONF"  "$PR_ROOT" "$PR_RUN" "$PM_ROOT" "$PM_RUN" "$PM_TMP" "$WORK/cni-empty" "$WORK/cni" "$WORK/yaml"
BRIDGE=prb0
SUBNET=10.216.0.0/24
CNI_BRIDGE=prbc0
CNI_SUBNET=10.216.1.0/24
NETNS=prbench$$

cat >"$WORK/default.toml" <<EOF
[network]
cni_conf_dir = "$WORK/cni-empty"
bridge = "$BRIDGE"
subnet = "$SUBNET"
EOF
cat >"$WORK/cni.toml" <<EOF
[network]
cni_conf_dir = "$WORK/cni"
cni_cache_dir = "$WORK/cni-cache"
EOF
cat >"$WORK/cni/10-bench.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "podrun-bench",
  "plugins": [
    {"type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$CNI_SUBNET"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$WORK/host-local"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
podman_conf '"nofile=20000:20000", "nproc=4096:4096"' "$PM_RUN" "$PM_ROOT"
podrun_conf

pod_yaml() { # name hostNetwork
    cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
spec:
  terminationGracePeriodSeconds: 0
  restartPolicy: Never
  hostNetwork: $2
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    ports:
    - containerPort: 18080
      hostPort: 18080
EOF
}
pod_yaml net-default false >"$WORK/yaml/default.yaml"
pod_yaml net-host true >"$WORK/yaml/host.yaml"
pod_yaml net-cni false >"$WORK/yaml/cni.yaml"
pod_yaml net-podman false >"$WORK/yaml/podman.yaml"

podrun_() { "$PODRUN" --root "$PR_ROOT" --run-root "$PR_RUN" --registries-conf "$CONF/podrun-registries.conf" "$@"; }
podrun_cni_() { "$PODRUN" --root "$PR_ROOT_CNI" --run-root "$PR_RUN_CNI" --registries-conf "$CONF/podrun-registries.conf" "$@"; }

# What the node had before (podman's CNI network and the plugins leave a bridge and
# shared chains behind: those that are new are removed on exit).
LINKS_BEFORE=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort)
CHAINS_BEFORE=$(iptables-save | awk '/^:CNI-/ {print substr($1, 2)}' | sort)

cleanup() {
    set +e
    for p in net-default net-host; do podrun_ delete pod "$p" >/dev/null 2>&1; done
    podrun_cni_ delete pod net-cni >/dev/null 2>&1
    for r in "$PR_ROOT" "$PR_ROOT_CNI"; do
        [[ -f "$r/agent.lock" ]] && kill "$(cat "$r/agent.lock")" 2>/dev/null
    done
    sleep 0.5
    podman_ kube down "$WORK/yaml/podman.yaml" >/dev/null 2>&1
    podman_ pod rm -af >/dev/null 2>&1
    podman_ rm -af >/dev/null 2>&1
    ip netns del "$NETNS" 2>/dev/null
    ip link del "$BRIDGE" 2>/dev/null
    ip link del "$CNI_BRIDGE" 2>/dev/null
    # Our rules only: those naming our bridges or subnets, and podrun's shared chains
    # when nothing else is left in them.
    for t in nat filter; do
        iptables-save -t "$t" | grep -E -- "$BRIDGE|$CNI_BRIDGE|10\.216\." | grep '^-A' |
            sed 's/^-A/-D/' | while read -r rule; do eval "iptables -t $t $rule"; done
    done
    if ! iptables-save | grep -q -- '-A PODRUN-POSTROUTING -s'; then
        iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j PODRUN-HOSTPORTS 2>/dev/null
        iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j PODRUN-HOSTPORTS 2>/dev/null
        iptables -t nat -D POSTROUTING -j PODRUN-POSTROUTING 2>/dev/null
        iptables -D INPUT -j PODRUN-INPUT 2>/dev/null
        for c in PODRUN-POSTROUTING PODRUN-HOSTPORTS PODRUN-HOSTPORT-SETMARK; do
            iptables -t nat -F "$c" 2>/dev/null; iptables -t nat -X "$c" 2>/dev/null
        done
        iptables -F PODRUN-INPUT 2>/dev/null; iptables -X PODRUN-INPUT 2>/dev/null
    fi
    for l in $(comm -13 <(printf '%s\n' "$LINKS_BEFORE") \
        <(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort) | grep '^cni-podman'); do
        ip link del "$l"
    done
    new_chains=$(comm -13 <(printf '%s\n' "$CHAINS_BEFORE") \
        <(iptables-save | awk '/^:CNI-/ {print substr($1, 2)}' | sort))
    for t in nat filter; do
        for c in $new_chains; do
            iptables-save -t "$t" | grep -- "-j $c\b" | grep '^-A' | sed 's/^-A/-D/' |
                while read -r rule; do eval "iptables -t $t $rule"; done
        done
        for c in $new_chains; do iptables -t "$t" -F "$c" 2>/dev/null; done
        for c in $new_chains; do iptables -t "$t" -X "$c" 2>/dev/null; done
    done
    grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

log "pulling $IMAGE into both stores"
podrun_ pull "$IMAGE" >/dev/null
podrun_cni_ pull "$IMAGE" >/dev/null
podman_ pull --tls-verify=false --signature-policy "$CONF/policy.json" "$IMAGE" >/dev/null
ip netns add "$NETNS"

# One untimed run of each (and a check that the pods got their addresses).
podrun_ --config "$WORK/default.toml" run -d -f "$WORK/yaml/default.yaml" >/dev/null
ip=$(podrun_ get pod net-default -o wide | awk 'NR==2 {print $6}')
[[ "$ip" == 10.216.0.* ]] || die "the default-network pod has no address of $SUBNET (IP: $ip)"
podrun_ delete pod net-default >/dev/null
podrun_cni_ --config "$WORK/cni.toml" run -d -f "$WORK/yaml/cni.yaml" >/dev/null
ip=$(podrun_cni_ get pod net-cni -o wide | awk 'NR==2 {print $6}')
[[ "$ip" == 10.216.1.* ]] || die "the CNI pod has no address of $CNI_SUBNET (IP: $ip)"
podrun_cni_ delete pod net-cni >/dev/null
out=$(podman_ kube play "$WORK/yaml/podman.yaml" 2>&1 </dev/null) || { printf '%s\n' "$out" >&2; die "podman kube play failed"; }
podman_ kube down "$WORK/yaml/podman.yaml" >/dev/null
PODMAN_NET=$(podman_ info --format '{{.Host.NetworkBackend}}' 2>/dev/null || echo unknown)

export PODRUN PR_ROOT PR_RUN PR_ROOT_CNI PR_RUN_CNI WORK N NETNS REGISTRY
cat >"$WORK/driver.py" <<'PYEOF'
import json, os, statistics, subprocess, sys, time

e = os.environ
work, n = e["WORK"], int(e["N"])
podrun = [e["PODRUN"], "--root", e["PR_ROOT"], "--run-root", e["PR_RUN"],
          "--registries-conf", work + "/conf/podrun-registries.conf"]
podrun_cni = [e["PODRUN"], "--root", e["PR_ROOT_CNI"], "--run-root", e["PR_RUN_CNI"],
              "--registries-conf", work + "/conf/podrun-registries.conf"]
podman = ["podman", "--root", work + "/podman-root", "--runroot", work + "/runs/podman",
          "--tmpdir", work + "/podman-tmp", "--storage-driver", "overlay"]
y = lambda n: work + "/yaml/" + n + ".yaml"
tools = [
    ("podrun, default network", podrun + ["--config", work + "/default.toml", "run", "-d", "-f", y("default")],
     podrun + ["delete", "pod", "net-default"]),
    ("podrun, hostNetwork", podrun + ["--config", work + "/default.toml", "run", "-d", "-f", y("host")],
     podrun + ["delete", "pod", "net-host"]),
    ("podrun, CNI conflist", podrun_cni + ["--config", work + "/cni.toml", "run", "-d", "-f", y("cni")],
     podrun_cni + ["delete", "pod", "net-cni"]),
    ("podman kube play", podman + ["kube", "play", y("podman")], podman + ["kube", "down", y("podman")]),
]

def run(argv):
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("FAILED: %s\n%s" % (" ".join(argv), p.stdout.decode(errors="replace")))
    return dt

# The plugins alone: ADD of bridge then portmap (with prevResult), DEL in reverse, as
# libcni runs a conflist, with a portMappings capability of one port.
conf = json.load(open(work + "/cni/10-bench.conflist"))
def plugin(cmd, p, prev=None, cid="bench"):
    cfg = dict(p, cniVersion=conf["cniVersion"], name=conf["name"])
    if p["type"] == "portmap":
        cfg["runtimeConfig"] = {"portMappings": [{"hostPort": 18080, "containerPort": 18080, "protocol": "tcp"}]}
        cfg.pop("capabilities", None)
    if prev is not None:
        cfg["prevResult"] = prev
    env = dict(e, CNI_COMMAND=cmd, CNI_CONTAINERID=cid, CNI_NETNS="/var/run/netns/" + e["NETNS"],
               CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/lib/cni/" + p["type"]], input=json.dumps(cfg).encode(), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit("plugin %s %s failed: %s %s" % (p["type"], cmd, r.stdout, r.stderr))
    return dt, (json.loads(r.stdout) if r.stdout.strip() else None)

def cni_cycle():
    add = dele = 0.0
    prev = None
    for p in conf["plugins"]:
        dt, prev = plugin("ADD", p, prev)
        add += dt
    for p in reversed(conf["plugins"]):
        dt, _ = plugin("DEL", p, prev)
        dele += dt
    return add, dele

res = {name: {"start": [], "delete": []} for name, _, _ in tools}
res["CNI plugins alone"] = {"add": [], "del": []}
cni_cycle()  # warm-up
for i in range(n):
    order = tools[i % len(tools):] + tools[:i % len(tools)]
    for name, start, delete in order:
        res[name]["start"].append(run(start))
        res[name]["delete"].append(run(delete))
        time.sleep(0.2)
    a, d = cni_cycle()
    res["CNI plugins alone"]["add"].append(a)
    res["CNI plugins alone"]["del"].append(d)
    print("driver: run %d/%d done" % (i + 1, n), file=sys.stderr, flush=True)
json.dump(res, open(work + "/raw.json", "w"), indent=1)
PYEOF

wait_quiet
LOAD_BEFORE=$(loadavg)
log "timed runs: N=$N of each (load average $LOAD_BEFORE)"
python3 "$WORK/driver.py"
LOAD_AFTER=$(loadavg)
mkdir -p "$RESULTS"
cp "$WORK/raw.json" "$RESULTS/network.json"

export FACT_DATE FACT_MACHINE FACT_REV FACT_TOOLS FACT_LOAD FACT_PODMAN_NET FACT_ELAPSED FACT_N
FACT_DATE=$(fact_date)
FACT_MACHINE=$(fact_machine)
FACT_REV="$(fact_rev); binary built $(date -u -r "$PODRUN" '+%Y-%m-%d %H:%M UTC')"
FACT_TOOLS="$(podman --version), containernetworking-plugins $(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || echo '?'), $(iptables --version)"
FACT_LOAD="load average $LOAD_BEFORE before the timed runs, $LOAD_AFTER after them"
FACT_PODMAN_NET=$PODMAN_NET
FACT_ELAPSED=$((SECONDS - START))
FACT_N=$N
python3 - "$RESULTS/network.json" <<'EOF' | put_section network.sh "$OUT/RESULTS.md"
import json, os, statistics, sys
r = json.load(open(sys.argv[1]))
f = lambda k: os.environ["FACT_" + k]
med = statistics.median
ms = lambda v: "%.0f" % (v * 1000)
w = print
w("# Pod networking: podrun's default network and CNI vs podman and the plugins alone\n")
w("Generated by `bench/network.sh` (see `bench/README.md`). Raw data: `bench/results/network.json`.\n")
w("- **date**: %s" % f("DATE"))
w("- **machine**: %s" % f("MACHINE"))
w("- **podrun**: %s" % f("REV"))
w("- **tools**: %s; podman's network backend: %s" % (f("TOOLS"), f("PODMAN_NET")))
w("- **file systems**: stores on the disk (ext4 on /dev/vda), run roots on a tmpfs")
w("- **runs**: %s of each, in rotation; each start (`podrun run -d`, `podman kube play`) followed by its timed deletion; every pod publishes hostPort 18080 (the bare plugin cycle maps it too)" % f("N"))
w("- **machine load**: %s" % f("LOAD"))
w("- **whole script**: %s s\n" % f("ELAPSED"))
w("| what | start median ms | min | max | delete median ms |")
w("|---|---:|---:|---:|---:|")
for name in ["podrun, default network", "podrun, hostNetwork", "podrun, CNI conflist", "podman kube play"]:
    s, d = r[name]["start"], r[name]["delete"]
    w("| %s | %s | %s | %s | %s |" % (name, ms(med(s)), ms(min(s)), ms(max(s)), ms(med(d))))
c = r["CNI plugins alone"]
cyc = [a + d for a, d in zip(c["add"], c["del"])]
w("| CNI plugins alone: ADD (bridge+portmap) | %s | %s | %s | DEL %s |" % (ms(med(c["add"])), ms(min(c["add"])), ms(max(c["add"])), ms(med(c["del"]))))
w("")
dn = med(r["podrun, default network"]["start"]); hn = med(r["podrun, hostNetwork"]["start"])
cn = med(r["podrun, CNI conflist"]["start"]); pm = med(r["podman kube play"]["start"])
w("- podman kube play / podrun on the default network: **%.1f×** (target ≥ 5×)" % (pm / dn))
w("- the default network's own cost (default network − hostNetwork start): **%+.0f ms** (target ≤ 10 ms)" % ((dn - hn) * 1000))
w("- podrun through the conflist − hostNetwork start: %+.0f ms, against the plugins' own ADD of %.0f ms: podrun adds **%+.0f ms** (target ≤ 10 ms)" % ((cn - hn) * 1000, med(c["add"]) * 1000, (cn - hn - med(c["add"])) * 1000))
w("- a bare CNI ADD+DEL cycle of the conflist: %.0f ms (median)" % (med(cyc) * 1000))
EOF
log "wrote the network section of $OUT/RESULTS.md and $RESULTS/network.json"
