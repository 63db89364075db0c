#!/usr/bin/env python3
"""Fails when a podrun crate depends on another podrun crate that the layering
(ARCHITECTURE.md, after ../shared/DESIGN.md) does not allow.

Only normal and build dependencies count: tests may use any crate. Run from the
repository (scripts/test.sh runs it); prints the graph it found.
"""
import json
import subprocess
import sys

# crate -> the podrun crates it may use. Arrows point down the layers:
# binary -> agent -> {kubelet, volume, spec, runtime}; cri -> runtime;
# runtime -> {image, oci, net}; the pure crates use none of ours (volume and
# kubelet may read the Pod model of spec).
ALLOWED = {
    "podrun": {"podrun-agent", "podrun-cri", "podrun-runtime", "podrun-kubelet",
               "podrun-spec", "podrun-image", "podrun-oci", "podrun-net",
               "podrun-volume"},
    # The agent reaches images only through the runtime's ImageService. It
    # uses oci for the CRI types the runtime's interface is written in and the
    # node's settings (Host), and net for kubelet's file formats (/etc/hosts,
    # resolv.conf by dnsPolicy) and probing inside the pod's network namespace.
    "podrun-agent": {"podrun-kubelet", "podrun-volume", "podrun-spec", "podrun-runtime",
                     "podrun-oci", "podrun-net"},
    "podrun-cri": {"podrun-runtime"},
    "podrun-runtime": {"podrun-image", "podrun-oci", "podrun-net"},
    "podrun-kubelet": {"podrun-spec"},
    "podrun-volume": {"podrun-spec"},
    "podrun-spec": set(),
    "podrun-image": set(),
    "podrun-oci": set(),
    "podrun-net": set(),
    "podrun-fs": set(),
}
# The file rules (durable atomic write, ID check) are below every layer.
for uses in ALLOWED.values():
    if uses is not ALLOWED["podrun-fs"]:
        uses.add("podrun-fs")


def main() -> int:
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"]))
    ours = {p["name"] for p in meta["packages"]}
    bad = []
    for p in sorted(meta["packages"], key=lambda p: p["name"]):
        name = p["name"]
        uses = sorted({d["name"] for d in p["dependencies"]
                       if d["name"] in ours and d.get("kind") in (None, "build")})
        print(f"{name} -> {', '.join(uses) if uses else '(none of ours)'}")
        if name not in ALLOWED:
            bad.append(f"{name}: a crate the layering does not know: add it to "
                       "scripts/check-graph.py and ARCHITECTURE.md")
            continue
        for u in uses:
            if u not in ALLOWED[name]:
                bad.append(f"{name} -> {u}: not allowed by the layering (ARCHITECTURE.md)")
    for b in bad:
        print(f"check-graph: {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
