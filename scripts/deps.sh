#!/usr/bin/env bash
# Installs everything the podrun test suite needs on a Debian 12 machine (as root).
# Idempotent and fast (one dpkg-query call) when everything is already present:
# apt-get runs only when a package is missing, with one `apt-get update` first.
set -euo pipefail

PACKAGES=(
    docker-registry   # the registry the tests pull from (scripts/registry.sh)
    skopeo            # pushes the test images (scripts/test-images.sh)
    umoci             # OCI layout tooling, used by some tests
    busybox-static    # /bin/busybox, the rootfs of every test image
    apache2-utils     # htpasswd (bcrypt) for the auth registry
    zstd pigz         # layer compression
    python3           # tests/images/build.py
    libssl-dev pkg-config libseccomp-dev libsqlite3-dev   # native deps of the Rust crates (libdbus is built in: dbus's `vendored`)
    protobuf-compiler                                     # protoc: the CRI api.proto (crates/cri/build.rs)
    crun runc         # OCI runtime backends
    containernetworking-plugins iptables   # CNI
    curl              # readiness checks
    openssl           # a self-signed certificate for the HTTPS probe test
    python3-grpcio    # the gRPC health server of the gRPC probe test (/usr/bin/python3)
    python3-yaml      # PyYAML, the YAML 1.1 reader of podrun's YAML output tests (/usr/bin/python3)
    qemu-system-x86 linux-image-amd64   # the cgroup v2 VM of scripts/vm-v2.sh (Debian's kernel, TCG without KVM)
)

log() { printf 'deps: %s\n' "$*" >&2; }

declare -A installed=()
while read -r pkg status; do
    [[ "$status" == "installed" ]] && installed[${pkg%%:*}]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
    [[ -n "${installed[$p]:-}" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages: ${missing[*]} (run as root to install them)"
        exit 1
    fi
    registry_was_installed=0
    dpkg-query -W -f='${db:Status-Status}' docker-registry 2>/dev/null | grep -qx installed && registry_was_installed=1
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
    # Debian's docker-registry package starts a system service listening on :5000
    # (all interfaces) right after installation; it would take the port of our
    # test registry. Disable it, but only when we installed the package just now.
    if ((registry_was_installed == 0)); then
        if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
            systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
        elif [[ -x /etc/init.d/docker-registry ]]; then
            /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
            if command -v update-rc.d >/dev/null; then
                update-rc.d docker-registry disable >/dev/null 2>&1 || true
            fi
        fi
        log "disabled the docker-registry system service (tests run their own registries)"
    fi
fi

# Rust toolchain: cargo must exist (not installable from here: no internet besides
# the package registries); rustfmt and clippy are added through rustup when missing.
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
    log "cargo not found (install a Rust toolchain with rustup)"
    exit 1
fi
need=()
cargo fmt --version >/dev/null 2>&1 || need+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || need+=(clippy)
if ((${#need[@]})); then
    if command -v rustup >/dev/null; then
        log "rustup component add ${need[*]}"
        rustup component add "${need[@]}"
    else
        log "missing ${need[*]} and no rustup to add them"
        exit 1
    fi
fi
