#!/usr/bin/env bash
# Builds the test images (tests/images/build.py -> .cache/test-images/) and pushes
# them to the test registries started by scripts/registry.sh. See tests/images/README.md.
#
# Cached: the build reruns only when build.py, this script or /bin/busybox change
# (key: sha256 of the three); the push is skipped when the registries already hold
# exactly this build (marker in the registry's state dir + a HEAD of every manifest).
#
#   scripts/test-images.sh            build if needed, then push if needed
#   scripts/test-images.sh --build    build only (no registry needed)
#   FORCE=1 scripts/test-images.sh    rebuild and re-push regardless of the cache
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache/test-images"
STATE=${PODRUN_TEST_STATE:-/tmp/podrun-test-registry}
PLAIN_ADDR=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
AUTH_ADDR=${PODRUN_TEST_AUTH_REGISTRY:-127.0.0.1:5001}
AUTH_CREDS=podrun:secret
BUSYBOX=/bin/busybox

log() { printf 'test-images.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in python3 skopeo curl; do
    command -v "$tool" >/dev/null || die "$tool not installed (run scripts/deps.sh)"
done
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX missing (apt-get install busybox-static; scripts/deps.sh does)"

SKOPEO=(skopeo --insecure-policy)

key=$(cat "$ROOT/tests/images/build.py" "${BASH_SOURCE[0]}" "$BUSYBOX" | sha256sum | cut -c1-16)

# ---- build ----------------------------------------------------------------------
if [[ "${FORCE:-0}" != 1 && -f "$CACHE/.key" && "$(<"$CACHE/.key")" == "$key" ]]; then
    log "images up to date in $CACHE (key $key)"
else
    start=$SECONDS
    new="$CACHE.new"
    rm -rf "$new"
    python3 "$ROOT/tests/images/build.py" "$new" --busybox "$BUSYBOX"
    # Archives for the "image load" tests.
    "${SKOPEO[@]}" copy -q "oci:$new/oci:busybox:oci" \
        "oci-archive:$new/busybox-oci-archive.tar:busybox:archived"
    "${SKOPEO[@]}" copy -q "oci:$new/oci:busybox:latest" \
        "docker-archive:$new/busybox-docker-save.tar:busybox:saved"
    # skopeo writes the normalized name (RepoTags ["docker.io/library/busybox:saved"]);
    # `docker save` writes the familiar one ("busybox:saved"). Rewrite it that way.
    python3 - "$new/busybox-docker-save.tar" <<'EOF'
import io, json, os, sys, tarfile
path = sys.argv[1]
def familiar(name):
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name
with tarfile.open(path) as src, tarfile.open(path + ".new", "w", format=tarfile.PAX_FORMAT) as dst:
    for ti in src:
        data = src.extractfile(ti).read() if ti.isfile() else None
        if ti.name == "manifest.json":
            m = json.loads(data)
            for e in m:
                e["RepoTags"] = [familiar(t) for t in e.get("RepoTags") or []]
            data = json.dumps(m, separators=(",", ":")).encode()
        elif ti.name == "repositories":
            data = json.dumps({familiar(k): v for k, v in json.loads(data).items()},
                              separators=(",", ":")).encode()
        if data is not None:
            ti.size = len(data)
            dst.addfile(ti, io.BytesIO(data))
        else:
            dst.addfile(ti)
os.replace(path + ".new", path)
EOF
    echo "$key" >"$new/.key"
    rm -rf "$CACHE.old"
    [[ -e "$CACHE" ]] && mv "$CACHE" "$CACHE.old"
    mv "$new" "$CACHE"
    rm -rf "$CACHE.old"
    log "built images in $((SECONDS - start))s -> $CACHE"
fi
[[ "${1:-}" == "--build" ]] && exit 0

# ---- push -----------------------------------------------------------------------
# One line per (registry, image): "name addr ref mediaType digest pushFormat".
plan=$(python3 - "$CACHE/catalog.json" "$PLAIN_ADDR" "$AUTH_ADDR" <<'EOF'
import json, sys
catalog, addrs = json.load(open(sys.argv[1])), {"plain": sys.argv[2], "auth": sys.argv[3]}
for e in catalog:
    for r in e["registries"]:
        print(r, addrs[r], e["ref"], e["mediaType"], e["digest"], e["pushFormat"])
EOF
)

manifest_present() { # name addr ref -> HEAD /v2/<repo>/manifests/<tag> is 200
    local creds=() repo=${3%%:*} tag=${3#*:}
    [[ "$1" == auth ]] && creds=(-u "$AUTH_CREDS")
    [[ $(curl -s -o /dev/null -m 5 -I -w '%{http_code}' "${creds[@]}" \
        -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
        "http://$2/v2/$repo/manifests/$tag") == 200 ]]
}

for name in plain auth; do
    addr=$PLAIN_ADDR want=200
    [[ $name == auth ]] && addr=$AUTH_ADDR want=401
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$addr/v2/" || true)
    [[ "$code" == "$want" ]] || die "$name registry not answering on $addr (GET /v2/ -> $code); run scripts/registry.sh start"
done

declare -A up_to_date=()
for name in plain auth; do
    marker="$STATE/$name/pushed-$key"
    [[ "${FORCE:-0}" != 1 && -f "$marker" ]] || continue
    ok=1
    while read -r r addr ref _; do
        [[ "$r" == "$name" ]] || continue
        manifest_present "$r" "$addr" "$ref" || { ok=0; break; }
    done <<<"$plan"
    ((ok)) && up_to_date[$name]=1
done

start=$SECONDS
digests="$CACHE/.digests.$$"
mkdir -p "$digests"
trap 'rm -rf "$digests"' EXIT
pushed=0
while read -r name addr ref media_type digest format; do
    [[ -z "${up_to_date[$name]:-}" ]] || continue
    args=(copy -q --dest-tls-verify=false --digestfile "$digests/$name-${ref/:/_}")
    [[ $name == auth ]] && args+=(--dest-creds "$AUTH_CREDS")
    case "$format" in
        v2s2) args+=(--format v2s2) ;;
        oci) args+=(--preserve-digests)
             [[ "$media_type" == *index* ]] && args+=(--all) ;;
        *) die "unknown push format $format" ;;
    esac
    "${SKOPEO[@]}" "${args[@]}" "oci:$CACHE/oci:$ref" "docker://$addr/$ref" </dev/null ||
        die "push of $ref to $name registry ($addr) failed"
    got=$(<"$digests/$name-${ref/:/_}")
    if [[ "$format" == oci && "$got" != "$digest" ]]; then
        die "$ref on $name registry has digest $got, expected $digest"
    fi
    pushed=$((pushed + 1))
done <<<"$plan"

# A Docker Hub mirror keeps Hub's paths: library/busybox:oci, for mirror tests
# that configure the registry as a whole-registry mirror (containerd hosts.toml).
if ! manifest_present plain "$PLAIN_ADDR" library/busybox:oci; then
    "${SKOPEO[@]}" copy -q --dest-tls-verify=false --preserve-digests \
        "oci:$CACHE/oci:busybox:oci" "docker://$PLAIN_ADDR/library/busybox:oci" </dev/null ||
        die "push of library/busybox:oci failed"
fi

for name in plain auth; do
    [[ -z "${up_to_date[$name]:-}" ]] || continue
    [[ -d "$STATE/$name" ]] && { rm -f "$STATE/$name"/pushed-*; touch "$STATE/$name/pushed-$key"; }
done
if ((pushed)); then
    # Registry manifest digests (v2s2 ones differ from the layout's), for tests.
    python3 - "$digests" "$CACHE/registry-digests.json" <<'EOF'
import json, os, sys
d, out = sys.argv[1], sys.argv[2]
res = json.load(open(out)) if os.path.exists(out) else {}
for f in sorted(os.listdir(d)):
    name, ref = f.split("-", 1)
    res.setdefault(name, {})[ref.replace("_", ":", 1)] = open(os.path.join(d, f)).read().strip()
json.dump(res, open(out, "w"), indent=1, sort_keys=True)
EOF
    log "pushed $pushed image(s) in $((SECONDS - start))s"
else
    log "registries already hold these images (key $key)"
fi
