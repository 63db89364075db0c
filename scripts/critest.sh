#!/usr/bin/env bash
# Runs critest (cri-tools' CRI validation suite) against `podrun serve --cri` on a
# machine without internet access. See docs/critest.md for what it ran and showed.
#
# Needs (not shipped with podrun, and CI cannot build them: it has no Go module proxy):
#   CRITEST=/path/to/critest   critest from cri-tools (`go test -c ./cmd/critest`),
#                              default: critest on PATH
#   CRICTL=/path/to/crictl     crictl from cri-tools, used to stop what critest left
#                              and to wait for the socket; default: crictl on PATH
# and: root; podrun built in release mode (PODRUN=path, default target/release/podrun,
# with podrun-monitor and podrun-pause beside it); the local registry of
# scripts/registry.sh on ${PODRUN_TEST_REGISTRY:-127.0.0.1:5000} (started when down);
# python3, skopeo, curl, gcc with a static libc (libc6-dev), apt-get (to download
# Debian's dynamically linked busybox, see below), iptables-save/-restore, ip, ipcmk.
#
#   scripts/critest.sh                     build and push the stand-in images, run critest
#   scripts/critest.sh --images            only build and push the stand-in images
#   scripts/critest.sh -- ARGS...          pass ARGS to critest (--ginkgo.focus=...)
#
# critest pulls public images (registry.k8s.io/e2e-test-images/*, gcr.io/k8s-staging-
# cri-tools/*, registry.k8s.io/pause:3.9, k8s.gcr.io/pause:3.9). They are replaced by
# stand-ins built here from Debian's busybox-static, the way tests/images/build.py
# builds podrun's test images, pushed to the local registry under critest/<original
# name>, and podrun is given a registries.conf that mirrors registry.k8s.io, gcr.io and
# k8s.gcr.io there. What each stand-in does is written beside its files below. A few
# things busybox-static cannot do:
#   - Its shell runs applets without a PATH lookup, so `sh -c ls` never executes a
#     masked /bin/ls (the MaskedPaths spec); busybox:1.29's shell does. The stand-in's
#     /bin/sh is Debian's dynamically linked busybox (package `busybox`, downloaded with
#     `apt-get download`, built without that feature), with the host's libc beside it.
#   - nginx's master process names itself "nginx: master process ..." (the
#     ContainerPID spec reads /proc/1/cmdline), and nonewprivs' binary is setuid root
#     (busybox drops such privileges): two tiny C programs, compiled statically here.
#   - ipcs and pgrep are not in Debian's busybox-static: small shell stand-ins.
# The image with a digest (test-image-digest@sha256:9700f9a2...) cannot be mirrored:
# a digest names exact bytes, which only the original registry has.
#
# podrun runs with its own roots (/tmp/critest-root, /tmp/critest-run), its own
# config (an empty CNI directory, so its default network; bridge prcrit0 on
# 10.198.0.0/16) and socket. On exit, even on failure, the script removes critest's
# pods through crictl, stops podrun, and removes what is left of its roots' processes,
# mounts, network (bridge and iptables rules), cgroups and critest's host shared-memory
# segments. critest's log is kept in ${CRITEST_LOG_DIR:-/tmp/critest-logs}.
set -euo pipefail
export LC_ALL=C # sort and comm agree

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CRITEST=${CRITEST:-critest}
CRICTL=${CRICTL:-crictl}
PODRUN=${PODRUN:-$ROOT/target/release/podrun}
REGISTRY=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
PODRUN_ROOT=${CRITEST_PODRUN_ROOT:-/tmp/critest-root}
RUN_ROOT=${CRITEST_RUN_ROOT:-/tmp/critest-run}
CONF=${CRITEST_CONF_DIR:-/tmp/critest-conf}
LOGS=${CRITEST_LOG_DIR:-/tmp/critest-logs}
CACHE="$ROOT/.cache/critest-images"
MIRROR="$REGISTRY/critest"  # registry.k8s.io/x:y is served as $MIRROR/registry.k8s.io/x:y
BRIDGE=prcrit0
SUBNET=10.198.0.0/16
SOCKET="$RUN_ROOT/cri.sock"
BUSYBOX=/bin/busybox

log() { printf 'critest.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

images_only=0
critest_args=()
while (($#)); do
    case "$1" in
        --images) images_only=1 ;;
        --) shift; critest_args=("$@"); break ;;
        *) die "unknown argument '$1' (see the header of $0)" ;;
    esac
    shift
done

for tool in python3 skopeo curl gcc apt-get ldd sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not installed"
done
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX missing (apt-get install busybox-static)"
for dir in "$PODRUN_ROOT" "$RUN_ROOT" "$CONF"; do
    [[ "$dir" == /tmp/?* ]] || die "refusing to use $dir: the roots must be under /tmp"
done

# ---- stand-in images --------------------------------------------------------------
# Debian's dynamically linked busybox: an ash that looks commands up on PATH.
dynbb_deb=$(find "$CACHE.deb" -maxdepth 1 -name 'busybox_*.deb' 2>/dev/null | head -1 || true)
if [[ -z "$dynbb_deb" ]]; then
    mkdir -p "$CACHE.deb"
    log "downloading Debian's busybox package (apt-get download busybox)"
    (cd "$CACHE.deb" && apt-get download -q busybox >&2) ||
        die "apt-get download busybox failed (run apt-get update first?)"
    dynbb_deb=$(find "$CACHE.deb" -maxdepth 1 -name 'busybox_*.deb' | head -1)
fi

key=$(cat "${BASH_SOURCE[0]}" "$ROOT/tests/images/build.py" "$BUSYBOX" "$dynbb_deb" |
    sha256sum | cut -c1-16)
if [[ -f "$CACHE/.key" && "$(<"$CACHE/.key")" == "$key" ]]; then
    log "stand-in images up to date in $CACHE (key $key)"
else
    start=$SECONDS
    new="$CACHE.new"
    rm -rf "$new"
    mkdir -p "$new/src" "$new/bin" "$new/dynbb"
    dpkg-deb -x "$dynbb_deb" "$new/dynbb"
    dynbb="$new/dynbb/bin/busybox"
    [[ -x "$dynbb" ]] || die "$dynbb_deb has no bin/busybox"
    # The shared libraries the dynamic busybox loads, as the host has them.
    libs=$(ldd "$dynbb" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
    [[ -n "$libs" ]] || die "ldd found no libraries for $dynbb"

    # nginx's stand-in: `nginx -g 'daemon off;'` re-executes itself with the title real
    # nginx gives its master process (so /proc/<pid>/cmdline reads "nginx: master
    # process nginx -g daemon off;" and its name stays "nginx" for pidof), writes its
    # pid to /var/run/nginx.pid and runs busybox httpd on $NGINX_PORT (default 80) as
    # its worker, serving /usr/share/nginx/html; SIGTERM, SIGINT, SIGQUIT stop both.
    cat >"$new/src/nginx.c" <<'EOF'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TITLE "nginx: master process"
#define PIDFILE "/var/run/nginx.pid"

static volatile pid_t worker;

static void stop(int sig) {
    (void)sig;
    if (worker > 0)
        kill(worker, SIGTERM);
    unlink(PIDFILE);
    _exit(0);
}

int main(int argc, char **argv) {
    if (strncmp(argv[0], TITLE, strlen(TITLE)) != 0) {
        char title[1024] = TITLE, self[512];
        for (int i = 0; i < argc; i++) {
            const char *a = i == 0 ? "nginx" : argv[i];
            if (strlen(title) + strlen(a) + 2 > sizeof title)
                break;
            strcat(title, " ");
            strcat(title, a);
        }
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0) {
            perror("nginx: readlink /proc/self/exe");
            return 1;
        }
        self[n] = 0;
        char *args[] = {title, NULL};
        execv(self, args);
        perror("nginx: re-exec");
        return 1;
    }
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGQUIT, stop);
    FILE *f = fopen(PIDFILE, "w");
    if (!f) {
        perror("nginx: open " PIDFILE);
        return 1;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    const char *port = getenv("NGINX_PORT");
    worker = fork();
    if (worker < 0) {
        perror("nginx: fork");
        return 1;
    }
    if (worker == 0) {
        execl("/bin/busybox", "httpd", "-f", "-p", port && *port ? port : "80", "-h",
              "/usr/share/nginx/html", (char *)NULL);
        perror("nginx: exec busybox httpd");
        _exit(127);
    }
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, 0); /* reaps orphans too: it may be PID 1 */
        if (pid == worker) {
            unlink(PIDFILE);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        }
    }
}
EOF
    # nonewprivs' stand-in: a setuid-root binary printing its effective uid.
    cat >"$new/src/nnp.c" <<'EOF'
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
EOF
    for prog in nginx nnp; do
        gcc -static -Os -s -Wall -o "$new/bin/$prog" "$new/src/$prog.c" ||
            die "gcc -static failed for $prog (apt-get install gcc libc6-dev)"
    done

    # shellcheck disable=SC2086 # $libs: one path a line
    python3 - "$ROOT/tests/images" "$new" "$BUSYBOX" "$dynbb" "$new/bin" $libs <<'EOF'
"""Builds critest's stand-in images into one OCI layout (OUT/oci) and writes
OUT/plan (one "layout-ref original-name" line per name to push)."""
import os
import sys

sys.path.insert(0, sys.argv[1])
from build import PATH_ENV, Layer, Layout, busybox_applets, manifest  # noqa: E402

out, busybox, dynbb, bindir = sys.argv[2:6]
libs = sys.argv[6:]

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
www-data:x:33:
nogroup:x:65533:
nobody:x:65534:
"""

# Not in Debian's busybox-static; only what critest runs them with.
IPCS = """\
#!/bin/sh
# Stand-in for ipcs (util-linux): `ipcs -m` lists the System V shared memory
# segments of this IPC namespace, from /proc/sysvipc/shm, in ipcs's columns.
case "$*" in
    -m) ;;
    *) echo "ipcs (stand-in): only -m is supported" >&2; exit 1 ;;
esac
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size _ _ nattch uid _; do
    printf '0x%08x %-10s %-10s %-10s %-10s %-10s\\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
"""
PGREP = """\
#!/bin/sh
# Stand-in for pgrep (procps): `pgrep PATTERN` prints the pid of each process whose
# name matches PATTERN (an extended regular expression); exit 1 when none does.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN (stand-in)" >&2; exit 2; }
status=1
for d in /proc/[0-9]*; do
    name=$(cat "$d/comm" 2>/dev/null) || continue
    if printf '%s\\n' "$name" | grep -Eq -- "$1"; then
        echo "${d#/proc/}"
        status=0
    fi
done
exit $status
"""
PAUSE = """\
#!/bin/sh
# Stand-in for the pause binary: waits until SIGTERM or SIGINT.
trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $!
done
"""
HTTPD_FOREGROUND = """\
#!/bin/sh
# Stand-in for httpd-foreground (Apache httpd): busybox httpd on port 80.
echo "httpd (busybox stand-in): serving /usr/local/apache2/htdocs on port 80"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
"""
INDEX = "<html><body><h1>It works!</h1></body></html>\n"


def rootfs(layer):
    """busybox:1.29's layout: every applet a hard link to one busybox binary, but
    /bin/sh (and ash) Debian's dynamically linked busybox, whose shell runs
    commands found on PATH as busybox:1.29's does (the static one runs its applets
    without looking), with the host's libraries it loads."""
    for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755),
                    ("lib", 0o755), ("lib64", 0o755), ("proc", 0o555), ("root", 0o700),
                    ("sbin", 0o755), ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755),
                    ("usr/bin", 0o755), ("usr/sbin", 0o755), ("usr/local", 0o755),
                    ("usr/local/bin", 0o755), ("var", 0o755), ("var/run", 0o755),
                    ("var/tmp", 0o1777), ("var/www", 0o755)]:
        layer.dir(d, mode)
    layer.file_from("bin/busybox", busybox, 0o755)
    layer.file_from("bin/sh", dynbb, 0o755)
    layer.hardlink("bin/ash", "bin/sh")
    for applet in busybox_applets(busybox):
        if applet not in ("sh", "ash"):
            layer.hardlink("bin/" + applet, "bin/busybox")
    layer.file("bin/ipcs", IPCS, 0o755)
    layer.file("bin/pgrep", PGREP, 0o755)
    made = {"lib", "lib64"}
    for lib in libs:
        parent = os.path.dirname(lib.lstrip("/"))
        parts = parent.split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                layer.dir(d)
                made.add(d)
        layer.file_from(lib.lstrip("/"), os.path.realpath(lib), 0o755)
    layer.file("etc/passwd", PASSWD)
    layer.file("etc/group", GROUP)


layout = Layout(os.path.join(out, "oci"))
plan = []


def image(names, layers, cfg=None):
    cfg = dict(cfg or {})
    cfg.setdefault("Env", [PATH_ENV])
    if "Entrypoint" not in cfg:
        cfg.setdefault("Cmd", ["sh"])
    desc = manifest(layout, layers, cfg=cfg)
    ref = "img%d" % len(layout.refs)
    layout.tag(ref, desc)
    plan.extend("%s %s" % (ref, n) for n in names)


def layer(comment, fill):
    lay = Layer(layout, comment)
    fill(lay)
    return lay.finish()


base = layer("busybox rootfs (critest stand-in)", rootfs)

E2E = "registry.k8s.io/e2e-test-images/"
CRI = "gcr.io/k8s-staging-cri-tools/"

# The default container image: busybox.
image([E2E + "busybox:1.29-2"], [base])


def nginx_files(lay):
    lay.dir("usr")
    lay.dir("usr/sbin")
    lay.file_from("usr/sbin/nginx", os.path.join(bindir, "nginx"), 0o755)
    for d in ("usr/share", "usr/share/nginx", "usr/share/nginx/html", "etc/nginx"):
        lay.dir(d)
    lay.file("usr/share/nginx/html/index.html", INDEX)


nginx = layer("nginx stand-in", nginx_files)
nginx_cmd = ["nginx", "-g", "daemon off;"]
image([E2E + "nginx:1.14-2"], [base, nginx],
      {"Cmd": nginx_cmd, "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"})
# hostnet-nginx: nginx listening on 12003 in the node's network namespace.
image([CRI + "hostnet-nginx-amd64:latest"], [base, nginx],
      {"Env": [PATH_ENV, "NGINX_PORT=12003"], "Cmd": nginx_cmd,
       "ExposedPorts": {"12003/tcp": {}}, "StopSignal": "SIGQUIT"})


def httpd_files(lay):
    for d in ("usr", "usr/local", "usr/local/bin", "usr/local/apache2",
              "usr/local/apache2/htdocs"):
        lay.dir(d)
    lay.file("usr/local/bin/httpd-foreground", HTTPD_FOREGROUND, 0o755)
    lay.file("usr/local/apache2/htdocs/index.html", INDEX)


image([E2E + "httpd:2.4.39-4"], [base, layer("httpd stand-in", httpd_files)],
      {"Cmd": ["httpd-foreground"], "ExposedPorts": {"80/tcp": {}}})


def nnp_files(lay):
    for d in ("usr", "usr/local", "usr/local/bin"):
        lay.dir(d)
    lay.file_from("usr/local/bin/nnp", os.path.join(bindir, "nnp"), 0o4755)


image([E2E + "nonewprivs:1.3"], [base, layer("nonewprivs stand-in", nnp_files)],
      {"Entrypoint": ["/usr/local/bin/nnp"]})

# pause:3.9 from two registries: the same bytes, so the same image ID.
image(["registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"],
      [base, layer("pause stand-in", lambda l: l.file("pause", PAUSE, 0o755))],
      {"Entrypoint": ["/pause"]})

# cri-tools' images/image-test: busybox plus an empty file named after the image.
def marked(name):
    return layer("ADD " + name, lambda l: l.file(name, ""))


for name in ("test-image-1", "test-image-2", "test-image-3", "test-image-latest",
             "test-image-digest"):
    image([CRI + name + ":latest"], [base, marked(name)])
image([CRI + "test-image-tags:%d" % i for i in (1, 2, 3)], [base, marked("same-image")])
for tag in ("test", "all"):
    image([CRI + "test-image-tag:" + tag], [base, marked(tag)])

# cri-tools' images/image-user: busybox with USER set.
for name, user in (("test-image-user-uid", "1002"), ("test-image-user-username", "www-data"),
                   ("test-image-user-uid-group", "1003:1004"),
                   ("test-image-user-username-group", "www-data:1004")):
    image([CRI + name + ":latest"], [base], {"User": user, "Cmd": ["sh"]})


# cri-tools' images/image-predefined-group: default-user (1000) in group 50000.
def predefined_group(lay):
    lay.dir("etc")
    lay.file("etc/passwd", PASSWD + "default-user:x:1000:1000::/home/default-user:/bin/sh\n")
    lay.file("etc/group", GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")
    lay.dir("home")
    lay.dir("home/default-user", 0o755, uid=1000, gid=1000)


image([CRI + "test-image-predefined-group:latest"],
      [base, layer("adduser default-user, group-defined-in-image", predefined_group)],
      {"User": "1000", "Cmd": ["sh"]})

layout.finish()
with open(os.path.join(out, "plan"), "w") as f:
    f.write("\n".join(plan) + "\n")
print("critest.sh: built %d images (%d names)" % (len(layout.refs), len(plan)), file=sys.stderr)
EOF
    rm -rf "$new/dynbb" "$new/src"
    echo "$key" >"$new/.key"
    rm -rf "$CACHE.old"
    [[ -e "$CACHE" ]] && mv "$CACHE" "$CACHE.old"
    mv "$new" "$CACHE"
    rm -rf "$CACHE.old"
    log "built the stand-in images in $((SECONDS - start))s -> $CACHE"
fi

# ---- push -------------------------------------------------------------------------
code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$REGISTRY/v2/" || true)
if [[ "$code" != 200 ]]; then
    log "registry $REGISTRY not answering (GET /v2/ -> $code): starting it"
    bash "$ROOT/scripts/registry.sh" start
fi
marker="$CACHE/.pushed-$(echo "$REGISTRY" | tr -c 'a-zA-Z0-9\n' _)"
pushed_all() {
    [[ -f "$marker" && "$(<"$marker")" == "$(<"$CACHE/.key")" ]] || return 1
    local _ name repo tag
    while read -r _ name; do
        repo=${name%:*} tag=${name##*:}
        [[ $(curl -s -o /dev/null -m 5 -I -w '%{http_code}' \
            -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
            "http://$REGISTRY/v2/critest/$repo/manifests/$tag" 2>/dev/null) == 200 ]] || return 1
    done <"$CACHE/plan"
}
if pushed_all; then
    log "$REGISTRY already holds the stand-in images"
else
    start=$SECONDS
    while read -r ref name; do
        skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false \
            "oci:$CACHE/oci:$ref" "docker://$MIRROR/$name" </dev/null ||
            die "push of $name to $MIRROR failed"
    done <"$CACHE/plan"
    cat "$CACHE/.key" >"$marker"
    log "pushed $(wc -l <"$CACHE/plan") image names to $MIRROR in $((SECONDS - start))s"
fi
((images_only)) && exit 0

# ---- podrun -----------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "run as root (podrun makes namespaces, mounts, cgroups)"
command -v "$CRITEST" >/dev/null || die "critest not found: set CRITEST=/path/to/critest"
command -v "$CRICTL" >/dev/null || die "crictl not found: set CRICTL=/path/to/crictl"
[[ -x "$PODRUN" ]] || die "$PODRUN missing: cargo build --release -p podrun, or set PODRUN"
for tool in ip iptables-save iptables-restore ipcmk ipcs ipcrm mountpoint; do
    command -v "$tool" >/dev/null || die "$tool not installed"
done
for dir in "$PODRUN_ROOT" "$RUN_ROOT"; do
    [[ ! -e "$dir" ]] || die "$dir exists: another run, or a crashed one (remove it first)"
done
ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists: another run, or a crashed one"

# Before: cgroups and shared memory segments, so that only ours are removed after.
cgroup_dirs() { find /sys/fs/cgroup -mindepth 2 -type d -path '*/podrun*' 2>/dev/null | sort; }
shm_ids() { ipcs -m 2>/dev/null | awk '$2 ~ /^[0-9]+$/ {print $2}' | sort; }
cgroups_before=$(cgroup_dirs)
shm_before=$(shm_ids)
podrun_chains_before=$(iptables-save 2>/dev/null | grep -c '^:PODRUN-' || true)

rm -rf "$CONF"
mkdir -p "$CONF/cni" "$CONF/certs.d" "$LOGS"
cat >"$CONF/registries.conf" <<EOF
# critest's public images, served by $REGISTRY (scripts/critest.sh pushes them)
[[registry]]
prefix = "registry.k8s.io"
[[registry.mirror]]
location = "$MIRROR/registry.k8s.io"
insecure = true

[[registry]]
prefix = "k8s.gcr.io"
[[registry.mirror]]
location = "$MIRROR/k8s.gcr.io"
insecure = true

[[registry]]
prefix = "gcr.io"
[[registry.mirror]]
location = "$MIRROR/gcr.io"
insecure = true
EOF
cat >"$CONF/podrun.toml" <<EOF
# podrun's default network on a bridge of its own (no CNI config in cni_conf_dir)
[network]
cni_conf_dir = "$CONF/cni"
bridge = "$BRIDGE"
subnet = "$SUBNET"
EOF

server_pid=
# shellcheck disable=SC2317 # run from the EXIT trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    log "cleaning up"
    if [[ -S "$SOCKET" ]] && [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        local ep=(--runtime-endpoint "unix://$SOCKET" --image-endpoint "unix://$SOCKET" --timeout 60s)
        timeout 120 "$CRICTL" "${ep[@]}" rm -af >/dev/null 2>&1
        timeout 120 "$CRICTL" "${ep[@]}" rmp -af >/dev/null 2>&1
        left=$(timeout 30 "$CRICTL" "${ep[@]}" pods -q 2>/dev/null | wc -l)
        ((left == 0)) || log "$left sandbox(es) still listed after crictl rmp -af"
    fi
    if [[ -n "$server_pid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$server_pid" 2>/dev/null && { log "podrun (pid $server_pid) did not stop: SIGKILL"; kill -KILL "$server_pid"; }
        wait "$server_pid" 2>/dev/null
    fi
    # Processes of our roots (monitors, pause, containers' runtimes): by pid, after
    # checking that their command line names one of our roots.
    local pid
    while read -r pid; do
        [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
        # The search's own processes are gone by now: only what still runs counts.
        local cmdline
        cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        [[ -n "$cmdline" ]] || continue
        log "killing leftover process $pid: $cmdline"
        kill -KILL "$pid" 2>/dev/null
    done < <(grep -l -a -F -e "$PODRUN_ROOT" -e "$RUN_ROOT" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3)
    # Mounts under our roots, deepest first.
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || log "umount $m failed"
    done < <(awk -v a="$PODRUN_ROOT" -v b="$RUN_ROOT" 'index($2, a) == 1 || index($2, b) == 1 {print $2}' /proc/mounts | sort -r)
    # The network: the bridge, then its iptables rules (and the shared PODRUN chains
    # when they were not there before and no other network uses them).
    ip link del "$BRIDGE" 2>/dev/null
    remove_iptables
    # Cgroups made during the run, deepest first: what still runs in them is what
    # the removal of critest's pods left (do not run this beside another podrun).
    local d new_cgroups
    new_cgroups=$(comm -13 <(echo "$cgroups_before") <(cgroup_dirs) | sort -r)
    while read -r pid; do
        [[ -n "$pid" ]] || continue
        log "killing leftover process $pid in a pod cgroup: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
        kill -KILL "$pid" 2>/dev/null
    done < <(while read -r d; do [[ -n "$d" ]] && cat "$d/cgroup.procs" 2>/dev/null; done <<<"$new_cgroups" | sort -u)
    [[ -n "$new_cgroups" ]] && sleep 0.5
    while read -r d; do
        [[ -n "$d" ]] && { rmdir "$d" 2>/dev/null || log "cgroup $d not removed"; }
    done <<<"$new_cgroups"
    # critest's HostIpc specs make shared memory segments on the host (ipcmk).
    local id
    while read -r id; do
        [[ -n "$id" ]] && ipcrm -m "$id" 2>/dev/null
    done < <(comm -13 <(echo "$shm_before") <(shm_ids))
    rm -rf "$PODRUN_ROOT" "$RUN_ROOT" "$CONF"
    [[ -e "$PODRUN_ROOT" || -e "$RUN_ROOT" ]] && log "could not remove $PODRUN_ROOT / $RUN_ROOT"
    local leaks
    leaks=$(grep -c -F -e "$PODRUN_ROOT" -e "$RUN_ROOT" /proc/mounts)
    ((leaks == 0)) || log "$leaks mount(s) of the roots are left"
    ip link show "$BRIDGE" >/dev/null 2>&1 && log "bridge $BRIDGE is left"
    iptables-save 2>/dev/null | grep -q -e " $BRIDGE " -e " $BRIDGE\$" -e "$SUBNET" &&
        log "iptables rules for $BRIDGE are left"
    exit "$rc"
}

# Deletes this network's rules from PODRUN-POSTROUTING and PODRUN-INPUT; if the shared
# chains were not there before the run and hold nothing else, deletes them, jumps first.
# shellcheck disable=SC2317 # run from the EXIT trap
remove_iptables() {
    local saved table line rule batch=() other=0
    saved=$(iptables-save 2>/dev/null) || return 0
    table=
    while IFS= read -r line; do
        case "$line" in
            \**) table=${line#\*}; batch+=("*$table") ;;
            COMMIT) batch+=(COMMIT) ;;
            "-A PODRUN-POSTROUTING "* | "-A PODRUN-INPUT "* | "-A PODRUN-HOSTPORTS "*)
                if [[ "$line" == *" $BRIDGE "* || "$line" == *" $BRIDGE" || "$line" == *" $SUBNET "* ]]; then
                    batch+=("-D ${line#-A }")
                elif [[ "$line" != *"--mark 0x2000/0x2000 -j MASQUERADE" ]]; then
                    other=1
                fi ;;
        esac
    done <<<"$saved"
    if ((podrun_chains_before == 0 && other == 0)); then
        # Nothing else uses the shared chains: remove the jumps to them, then them.
        local out=() chains
        table=
        while IFS= read -r line; do
            case "$line" in
                \**) table=${line#\*}; out+=("*$table") ;;
                COMMIT)
                    chains=$(awk -v t="$table" '$0 == "*" t {on=1; next} /^COMMIT/ {on=0} on && /^:PODRUN-/ {print substr($1, 2)}' <<<"$saved")
                    for rule in $chains; do out+=("-F $rule"); done
                    for rule in $chains; do out+=("-X $rule"); done
                    out+=(COMMIT) ;;
                "-A "*)
                    rule=${line#-A }
                    if [[ "$rule" != PODRUN-* && "$rule" =~ -j\ PODRUN- ]]; then
                        out+=("-D $rule")
                    fi ;;
            esac
        done <<<"$saved"
        batch=("${out[@]}")
    fi
    printf '%s\n' "${batch[@]}" | iptables-restore --noflush --wait 2>/dev/null ||
        log "removing the iptables rules of $BRIDGE failed"
}

trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting podrun serve --cri on $SOCKET (log: $LOGS/podrun.log)"
"$PODRUN" --root "$PODRUN_ROOT" --run-root "$RUN_ROOT" --config "$CONF/podrun.toml" \
    --registries-conf "$CONF/registries.conf" --hosts-dir "$CONF/certs.d" \
    serve --cri --cri-socket "$SOCKET" >"$LOGS/podrun.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
    [[ -S "$SOCKET" ]] && "$CRICTL" --runtime-endpoint "unix://$SOCKET" --timeout 2s version \
        >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || die "podrun serve exited: $(tail -5 "$LOGS/podrun.log")"
    sleep 0.1
done
"$CRICTL" --runtime-endpoint "unix://$SOCKET" version >&2 || die "the CRI socket does not answer"

log "running critest (log: $LOGS/critest.log)"
set +e
"$CRITEST" --runtime-endpoint "unix://$SOCKET" --image-endpoint "unix://$SOCKET" \
    --ginkgo.v --ginkgo.no-color ${critest_args[@]+"${critest_args[@]}"} \
    2>&1 | tee "$LOGS/critest.log"
critest_rc=${PIPESTATUS[0]}
set -e
# Ginkgo's summary: "Ran 105 of 142 Specs ..." and "FAIL! -- 101 Passed | 4 Failed | ...".
summary=$(grep -a -E '^Ran [0-9]+ of [0-9]+ Specs' "$LOGS/critest.log" | tail -1 || true)
counts=$(grep -a -E -- '-- [0-9]+ Passed \| [0-9]+ Failed' "$LOGS/critest.log" | tail -1 || true)
log "${summary:-no summary} ${counts:+| $counts}"
grep -E '^\s*\[FAIL\]' "$LOGS/critest.log" | sort -u >&2 || true
exit "$critest_rc"
