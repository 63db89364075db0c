#!/usr/bin/env bash
# Runs a command inside a qemu VM whose kernel mounts cgroup v2 alone at /sys/fs/cgroup
# (issue 16: podrun's cgroup v2 paths proven on a real v2 kernel; this machine is v1 hybrid).
#
#   scripts/vm-v2.sh                  the v2 suite (scripts/vm-v2-suite.sh) in the guest
#   scripts/vm-v2.sh -- CMD ARGS...   CMD in the guest (run by bash, cwd = this checkout)
#   scripts/vm-v2.sh --systemd [-- CMD ARGS...]
#                                     the same with systemd as PID 1 (the systemd cgroup
#                                     driver's suite: scripts/vm-v2-suite.sh --systemd)
#
# The guest is Debian's own kernel (linux-image-amd64, /boot/vmlinuz-<newest>) with a small
# initramfs built here (busybox-static + the 9p/virtio/overlay modules of that kernel). Its
# root is the host's root file system shared READ-ONLY over virtio-9p with a tmpfs overlay
# on top, so the guest sees this checkout, the target dir and /usr but cannot change them.
# /dev, /proc, /sys (cgroup2 at /sys/fs/cgroup), /tmp and /run are fresh mounts (the host's
# /tmp, as the overlay shows it, is at /run/vm-v2/host-tmp); the only
# network device is loopback. The command's output streams to this terminal over the serial
# console; its exit status comes back through a small writable 9p share, and is this
# script's exit status. The VM is always stopped: on exit, on a signal, and after
# PODRUN_VM_TIMEOUT seconds (default 900). It gets 1 vCPU and PODRUN_VM_MEM (default 2G).
#
# With --systemd, stage 2 execs the host's /lib/systemd/systemd as PID 1 instead, into
# a target of its own (vm-v2.target) that wants only the system bus (dbus.socket, whose
# default dependencies are dropped) and the command's service; every generator is
# masked, so nothing of the host's boot (fstab, getty, udev) runs. The command runs in
# that service with its output on the serial console; it powers the VM off when done.
#
# /dev/kvm is used when it works; otherwise qemu emulates the CPU (TCG), which is slow.
# Environment variables named PODRUN_* are passed into the guest.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIMEOUT=${PODRUN_VM_TIMEOUT:-900}
MEM=${PODRUN_VM_MEM:-2G}

log() { printf 'vm-v2: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (qemu exports / over 9p with host permissions)"

# --- packages: qemu and the Debian kernel (also in scripts/deps.sh) -----------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
compgen -G '/boot/vmlinuz-*' >/dev/null || need+=(linux-image-amd64)
[[ -x /bin/busybox ]] || need+=(busybox-static)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi

# The newest installed Debian kernel that has its modules (not necessarily the running one).
kver=""
for k in $(ls /boot/vmlinuz-* | sed 's|^/boot/vmlinuz-||' | sort -V); do
    [[ -d /lib/modules/$k/kernel ]] && kver=$k
done
[[ -n "$kver" ]] || die "no kernel under /boot with modules in /lib/modules (apt-get install linux-image-amd64)"

# --- the work dir: initramfs, results share; removed on exit -------------------------------
work=$(mktemp -d /tmp/vm-v2.XXXXXX)
qemu_pid=""
cleanup() {
    local rc=$?
    if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        sleep 1
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The initramfs: busybox, the modules that mount the 9p root, and /init (stage 1).
modules=(virtio_pci 9pnet_virtio 9p overlay virtio_rng)
ird="$work/initramfs"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
: >"$ird/modules.list"
for m in "${modules[@]}"; do
    while read -r cmd path _; do
        [[ "$cmd" == insmod ]] || continue
        grep -qxF "/lib/modules/$(basename "$path")" "$ird/modules.list" && continue
        cp "$path" "$ird/lib/modules/"
        echo "/lib/modules/$(basename "$path")" >>"$ird/modules.list"
    done < <(modprobe -S "$kver" --show-depends "$m")
done
cat >"$ird/init" <<'EOF'
#!/bin/sh
# Stage 1 (PID 1 in the initramfs): mount the host's / read-only over 9p under a tmpfs
# overlay, then switch to it and run stage 2 (/vm-v2/guest-init.sh from the results share).
export PATH=/bin
busybox mount -t proc proc /proc
busybox mount -t sysfs sys /sys
busybox mount -t devtmpfs dev /dev
while read -r ko; do busybox insmod "$ko" || echo "stage1: insmod $ko failed"; done </modules.list
busybox mkdir -p /lower /rw /results
opts=trans=virtio,version=9p2000.L,msize=512000
busybox mount -t 9p -o ro,$opts,cache=loose hostroot /lower || { echo "stage1: mount 9p root failed"; busybox poweroff -f; }
busybox mount -t tmpfs -o mode=0755 rw /rw
busybox mkdir -p /rw/upper /rw/work
busybox mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || { echo "stage1: overlay failed"; busybox poweroff -f; }
busybox mkdir -p /newroot/vm-v2
busybox mount -t 9p -o $opts,cache=none results /newroot/vm-v2 || { echo "stage1: mount results failed"; busybox poweroff -f; }
busybox umount /proc /sys /dev 2>/dev/null
exec busybox switch_root /newroot /bin/bash /vm-v2/guest-init.sh
EOF
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# --- the results share: stage 2, the command, the exit status --------------------------------
res="$work/results"
mkdir -p "$res"
systemd=0
if (($# > 0)) && [[ "$1" == --systemd ]]; then
    systemd=1
    shift
    [[ -x /lib/systemd/systemd ]] || die "--systemd: /lib/systemd/systemd is missing (apt-get install systemd)"
    command -v dbus-daemon >/dev/null || die "--systemd: dbus-daemon is missing (apt-get install dbus)"
fi
if (($# > 0)) && [[ "$1" == -- ]]; then shift; fi
if (($# == 0)); then
    # The v2 suite: the test binaries are built here on the host (a no-op after
    # `cargo test --workspace`); the guest gets their paths.
    if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    log "building the test binaries"
    VM_V2_TESTS=$(cd "$ROOT" && cargo test --workspace --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
') || die "cargo test --no-run failed (run it to see why)"
    export VM_V2_TESTS
    if ((systemd)); then
        set -- bash scripts/vm-v2-suite.sh --systemd
    else
        set -- bash scripts/vm-v2-suite.sh
    fi
fi
{
    # The guest's /tmp is a fresh tmpfs (overlayfs cannot use an overlay for its upper
    # directories): a checkout under the host's /tmp (CI clones there) is bound back
    # at its own path, so the paths in the exported variables hold in the guest too.
    if [[ "$ROOT" == /tmp/* ]]; then
        printf 'mkdir -p %q && mount --bind %q %q || exit 125\n' \
            "$ROOT" "/run/vm-v2/host-tmp/${ROOT#/tmp/}" "$ROOT"
    fi
    printf 'cd %q\n' "$ROOT"
    for name in $(compgen -e); do
        case "$name" in
        PODRUN_* | VM_V2_TESTS | RUST_BACKTRACE | RUST_LOG) printf 'export %s=%q\n' "$name" "${!name}" ;;
        esac
    done
    printf 'export PODRUN_TEST_CGROUP=v2\n'
    printf '%q ' "$@"
    printf '\n'
} >"$res/cmd.sh"
((systemd)) && : >"$res/systemd"
cat >"$res/guest-init.sh" <<'EOF'
# Stage 2 (PID 1 on the overlay root): the usual mounts, cgroup2 alone, then the command.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
if [[ -e /vm-v2/systemd ]]; then
    # systemd as PID 1: it mounts /proc, /sys, /dev, cgroup2 … itself. Only what it
    # would not: the host's /tmp kept visible, a fresh /tmp.
    mount -t proc proc /proc
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
    mkdir -p /run/vm-v2/host-tmp
    mount --bind /tmp /run/vm-v2/host-tmp
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    umount /proc
    mkdir -p /etc/systemd/system-generators /etc/systemd/system/dbus.socket.d \
        /etc/systemd/system/dbus.service.d
    for g in /lib/systemd/system-generators/* /usr/lib/systemd/system-generators/*; do
        [[ -e "$g" ]] && ln -sf /dev/null "/etc/systemd/system-generators/${g##*/}"
    done
    # The system bus without sysinit.target (udev, tmpfiles, journald …).
    for u in dbus.socket dbus.service; do
        printf '[Unit]\nDefaultDependencies=no\n' >"/etc/systemd/system/$u.d/vm-v2.conf"
    done
    # No journald here: the bus's messages would only warn that it is missing.
    printf '[Service]\nStandardOutput=null\n' >>/etc/systemd/system/dbus.service.d/vm-v2.conf
    cat >/etc/systemd/system/vm-v2.target <<'UNIT'
[Unit]
Description=podrun vm-v2 command
DefaultDependencies=no
Wants=dbus.socket vm-v2-cmd.service
UNIT
    cat >/etc/systemd/system/vm-v2-cmd.service <<'UNIT'
[Unit]
Description=podrun vm-v2 command
DefaultDependencies=no
Requires=dbus.socket
After=dbus.socket
[Service]
Type=exec
ExecStart=/bin/bash /vm-v2/systemd-cmd.sh
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
UNIT
    cat >/vm-v2/systemd-cmd.sh <<'CMD'
echo "vm-v2: systemd up after $(cut -d' ' -f1 /proc/uptime)s (kernel $(uname -r), /sys/fs/cgroup: $(stat -f -c %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers))"
ip link set lo up
hostname podrun-v2
rc=0
bash /vm-v2/cmd.sh </dev/null || rc=$?
echo "$rc" >/vm-v2/rc
sync
echo "vm-v2: command exited $rc after $(cut -d' ' -f1 /proc/uptime)s"
systemctl poweroff --force --force
CMD
    exec /lib/systemd/systemd --unit=vm-v2.target --log-level=warning --show-status=false
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
mount -t tmpfs -o mode=0755 tmpfs /run
# The host's /tmp (read-only below the overlay) stays visible here: the v2 suite serves
# the test registries' storage from it instead of pushing every image again.
mkdir -p /run/vm-v2/host-tmp
mount --bind /tmp /run/vm-v2/host-tmp
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
ip link set lo up
hostname podrun-v2
echo "vm-v2: guest up after $(cut -d' ' -f1 /proc/uptime)s (kernel $(uname -r), /sys/fs/cgroup: $(stat -f -c %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers))"
rc=0
bash /vm-v2/cmd.sh </dev/null || rc=$?
echo "$rc" >/vm-v2/rc
sync
echo "vm-v2: command exited $rc after $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
EOF

# --- boot --------------------------------------------------------------------------------------
accel=tcg
if [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=kvm; fi
log "booting $kver (accel $accel, 1 vCPU, $MEM, timeout ${TIMEOUT}s)"
start=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 \
    -machine q35,accel=$accel -cpu max -smp 1 -m "$MEM" \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "/boot/vmlinuz-$kver" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all" \
    -serial stdio \
    -fsdev local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=results,path="$res",security_model=passthrough \
    -device virtio-9p-pci,fsdev=results,mount_tag=results \
    -device virtio-rng-pci \
    </dev/null &
qemu_pid=$!
qrc=0
wait "$qemu_pid" || qrc=$?
qemu_pid=""
end=$(date +%s.%N)
log "VM ran $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')s"
if [[ ! -s "$res/rc" ]]; then
    ((qrc == 124)) && die "timed out after ${TIMEOUT}s (PODRUN_VM_TIMEOUT)"
    die "the guest stopped without an exit status (qemu exit $qrc)"
fi
rc=$(<"$res/rc")
log "guest command exited $rc"
exit "$rc"
