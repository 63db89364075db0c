#!/usr/bin/env bash
# Local OCI registries for the podrun test suite (Debian's `docker-registry`, i.e.
# distribution/registry 2.8):
#
#   plain  no auth                           ${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
#   auth   htpasswd basic auth podrun:secret ${PODRUN_TEST_AUTH_REGISTRY:-127.0.0.1:5001}
#
# Both speak plain HTTP (no TLS) and listen on loopback only. Storage, configs, logs
# and pid files live under ${PODRUN_TEST_STATE:-/tmp/podrun-test-registry}.
#
#   scripts/registry.sh start    start both (no-op for one already running); waits
#                                until GET /v2/ answers (200 plain, 401 auth)
#   scripts/registry.sh stop     kill both and remove their state (images included)
#   scripts/registry.sh status   print their state; exit 0 only if both are up
set -euo pipefail

STATE=${PODRUN_TEST_STATE:-/tmp/podrun-test-registry}
PLAIN_ADDR=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
AUTH_ADDR=${PODRUN_TEST_AUTH_REGISTRY:-127.0.0.1:5001}
AUTH_USER=podrun
AUTH_PASSWORD=secret

die() { printf 'registry.sh: %s\n' "$*" >&2; exit 1; }
log() { printf 'registry.sh: %s\n' "$*" >&2; }

[[ "$STATE" == /* ]] || die "PODRUN_TEST_STATE must be an absolute path (got '$STATE')"

check_addr() {
    case "$1" in
        127.*:[0-9]* | localhost:[0-9]* | "[::1]":[0-9]*) ;;
        *) die "refusing to listen on '$1': use a loopback host:port (127.0.0.1:PORT)" ;;
    esac
}

# pid of the registry called $1 if it is running (and really is our registry), else nothing.
running_pid() {
    local name=$1 pidfile="$STATE/$1/registry.pid" pid
    [[ -f "$pidfile" ]] || return 0
    pid=$(<"$pidfile")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    # /proc/PID/cmdline is NUL-separated: "docker-registry serve <config>"
    if [[ -r /proc/$pid/cmdline ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "serve $STATE/$name/config.yml"; then
        echo "$pid"
    fi
}

alive() { # pid -> true while it runs (a zombie counts as gone: its parent may never reap it)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat%% *}" != Z ]]
}

http_code() { # addr -> HTTP status of GET /v2/ ("000" when nothing answers)
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$1/v2/" 2>/dev/null || true
}

write_config() { # name addr auth(0|1)
    local name=$1 addr=$2 auth=$3 dir="$STATE/$1"
    mkdir -p "$dir/storage"
    {
        cat <<EOF
# Written by scripts/registry.sh; regenerated on every start.
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
  fields:
    service: podrun-test-registry-$name
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $addr
  secret: podrun-test-registry-not-a-secret
  headers:
    X-Content-Type-Options: [nosniff]
EOF
        if ((auth)); then
            cat <<EOF
auth:
  htpasswd:
    realm: podrun-test
    path: $STATE/htpasswd
EOF
        fi
    } >"$dir/config.yml"
    printf '%s\n' "$addr" >"$dir/addr"
}

start_one() { # name addr auth(0|1) expected-status
    local name=$1 addr=$2 auth=$3 want=$4 dir="$STATE/$1" pid code i
    check_addr "$addr"
    pid=$(running_pid "$name")
    if [[ -n "$pid" ]]; then
        local old
        old=$(cat "$dir/addr" 2>/dev/null || true)
        [[ "$old" == "$addr" ]] ||
            die "$name registry already running on $old (pid $pid), not $addr: run '$0 stop' first"
        code=$(http_code "$addr")
        if [[ "$code" == "$want" ]]; then
            log "$name registry already running on $addr (pid $pid)"
            return 0
        fi
        log "$name registry pid $pid does not answer properly (HTTP $code); restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    code=$(http_code "$addr")
    if [[ "$code" != "000" ]]; then
        die "something else already answers on $addr (HTTP $code); Debian's own docker-registry service? \
(systemctl disable --now docker-registry) or choose another port with PODRUN_TEST_REGISTRY / PODRUN_TEST_AUTH_REGISTRY"
    fi
    write_config "$name" "$addr" "$auth"
    # setsid: own session, so a Ctrl-C on the caller does not reach it; the
    # registry is stopped by `stop`. REGISTRY_* variables would override the config.
    local unset_env=()
    while read -r v; do unset_env+=(-u "$v"); done < <(compgen -e | grep '^REGISTRY_' || true)
    setsid env "${unset_env[@]}" docker-registry serve "$dir/config.yml" \
        </dev/null >"$dir/registry.log" 2>&1 9<&- &
    pid=$!
    echo "$pid" >"$dir/registry.pid"
    for ((i = 0; i < 200; i++)); do # up to 10 s
        code=$(http_code "$addr")
        [[ "$code" == "$want" ]] && { log "$name registry up on http://$addr (pid $pid)"; return 0; }
        if ! alive "$pid"; then
            tail -n 20 "$dir/registry.log" >&2 || true
            die "$name registry exited during startup (log: $dir/registry.log)"
        fi
        sleep 0.05
    done
    tail -n 20 "$dir/registry.log" >&2 || true
    die "$name registry on $addr did not answer GET /v2/ with $want (last: $code)"
}

stop_one() { # name
    local name=$1 dir="$STATE/$1" pid i
    pid=$(running_pid "$name")
    if [[ -n "$pid" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        log "$name registry stopped (pid $pid)"
    fi
    # Remove only what start created, never "$STATE" wholesale.
    rm -rf "$dir/storage"
    rm -f "$dir/config.yml" "$dir/registry.pid" "$dir/registry.log" "$dir/addr" "$dir"/pushed-*
    rmdir "$dir" 2>/dev/null || true
}

cmd=${1:-}
case "$cmd" in
    start)
        command -v docker-registry >/dev/null || die "docker-registry not installed (run scripts/deps.sh)"
        command -v htpasswd >/dev/null || die "htpasswd not installed (run scripts/deps.sh)"
        mkdir -p "$STATE"
        exec 9<"$STATE"
        flock 9
        # bcrypt is the only hash the registry accepts; -C 4 keeps checks cheap.
        htpasswd -B -C 4 -b -c "$STATE/htpasswd" "$AUTH_USER" "$AUTH_PASSWORD" 2>/dev/null
        start_one plain "$PLAIN_ADDR" 0 200
        start_one auth "$AUTH_ADDR" 1 401
        ;;
    stop)
        [[ -d "$STATE" ]] || exit 0
        exec 9<"$STATE"
        flock 9
        stop_one plain
        stop_one auth
        rm -f "$STATE/htpasswd"
        rmdir "$STATE" 2>/dev/null || log "left $STATE in place (it holds files registry.sh did not create)"
        ;;
    status)
        rc=0
        for entry in "plain $PLAIN_ADDR 200" "auth $AUTH_ADDR 401"; do
            read -r name addr want <<<"$entry"
            pid=$(running_pid "$name")
            if [[ -n "$pid" ]]; then
                code=$(http_code "$(cat "$STATE/$name/addr" 2>/dev/null || echo "$addr")")
                echo "$name: running pid $pid on $(cat "$STATE/$name/addr" 2>/dev/null) (GET /v2/ -> $code)"
                [[ "$code" == "$want" ]] || rc=3
            else
                echo "$name: stopped"
                rc=3
            fi
        done
        exit $rc
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
