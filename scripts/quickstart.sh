#!/usr/bin/env bash
# The README's first command: install what podrun needs, start the local test
# registry with its images, build podrun, pull an image, list it, run a pod, and
# apply a pod with init containers, a sidecar and probes through the agent.
# The registry and the agent are left running (scripts/registry.sh stop; kill the
# pid in /var/lib/podrun/agent.lock, or podrun serve in a terminal of its own).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
bash scripts/deps.sh
bash scripts/setup-cgroups.sh
bash scripts/registry.sh start
bash scripts/test-images.sh
cargo build --release -p podrun
REGISTRY=${PODRUN_TEST_REGISTRY:-127.0.0.1:5000}
PODRUN="target/release/podrun --root ${PODRUN_ROOT:-/var/lib/podrun}"
set -x
$PODRUN pull "$REGISTRY/busybox:latest"
$PODRUN images
$PODRUN run -f examples/emptydir-pod.yaml
# The agent (started by apply): init containers, a sidecar, probes, then kubectl's views.
$PODRUN apply -f examples/web-pod.yaml
for _ in $(seq 50); do
    $PODRUN get pod web | grep -q ' 2/2 ' && break
    sleep 0.2
done
$PODRUN get pods -o wide
$PODRUN describe pod web
# Two pods talk over the pod network: the client fetches the page from web's IP;
# then the node reaches web through its hostPort.
WEB_IP=$($PODRUN get pod web -o wide | awk 'NR==2 {print $6}')
sed "s/WEB_IP/$WEB_IP/" examples/client-pod.yaml > "${TMPDIR:-/tmp}/podrun-client.yaml"
$PODRUN run -f "${TMPDIR:-/tmp}/podrun-client.yaml"
python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/index.html", timeout=5).read().decode().strip())'
$PODRUN delete -f examples/web-pod.yaml
