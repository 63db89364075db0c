#!/usr/bin/env python3
"""Builds podrun's test images as ONE OCI image layout (stdlib only).

    python3 tests/images/build.py OUT_DIR [--busybox /bin/busybox]

writes OUT_DIR/oci/ (an OCI image layout whose index.json names every image with an
org.opencontainers.image.ref.name annotation such as "busybox:latest") and
OUT_DIR/catalog.json (what scripts/test-images.sh pushes where, and how).

The images and what the tests may expect of them are described in README.md next to
this file; keep the two in step. Layer tars are reproducible: fixed mtimes, numeric
owners, sorted entries; gzip is written without a name or timestamp. The rootfs is
Debian's static busybox (package busybox-static) for every platform, so the arm64 and
arm "variants" of busybox:multi carry an amd64 binary: they exist to test platform
selection, not to run.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

MTIME = 1700000000  # 2023-11-14T22:13:20Z: every tar entry unless stated otherwise
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
REF_NAME = "org.opencontainers.image.ref.name"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
nobody:x:65534:
"""


def log(msg):
    print(f"build.py: {msg}", file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Layout:
    """An OCI image layout being written (blobs/sha256/..., index.json, oci-layout)."""

    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        self.tmp = os.path.join(root, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.refs = []

    def add_bytes(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.blobs, digest)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def add_file(self, path, media_type, digest=None):
        """Moves PATH into the blob store."""
        digest = digest or sha256_file(path)
        size = os.path.getsize(path)
        dest = os.path.join(self.blobs, digest)
        if os.path.exists(dest):
            os.unlink(path)
        else:
            os.replace(path, dest)
            os.chmod(dest, 0o644)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": size}

    def add_json(self, obj, media_type):
        return self.add_bytes(json.dumps(obj, separators=(",", ":")).encode(), media_type)

    def tag(self, ref, desc):
        entry = dict(desc)
        entry["annotations"] = {REF_NAME: ref}
        self.refs.append(entry)

    def finish(self):
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": self.refs}
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump(index, f, indent=1)
        shutil.rmtree(self.tmp)


class Layer:
    """A layer tar written to a temp file; entries added in call order."""

    def __init__(self, layout, comment):
        self.layout = layout
        self.comment = comment  # history "created_by"
        fd, self.path = tempfile.mkstemp(dir=layout.tmp, suffix=".tar")
        self.fobj = os.fdopen(fd, "wb")
        self.tar = tarfile.open(fileobj=self.fobj, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, type_, mode, uid=0, gid=0, mtime=MTIME):
        ti = tarfile.TarInfo(name)  # names are kept verbatim (even "/x" or "../x")
        ti.type = type_
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = mtime
        return ti

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.tar.addfile(self._info(name.rstrip("/") + "/", tarfile.DIRTYPE, mode, uid, gid))

    def file(self, name, data, mode=0o644, uid=0, gid=0, mtime=MTIME, pax=None):
        if isinstance(data, str):
            data = data.encode()
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid, mtime)
        ti.size = len(data)
        if pax:
            ti.pax_headers = dict(pax)
        self.tar.addfile(ti, io.BytesIO(data))

    def file_from(self, name, path, mode=0o755):
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = os.path.getsize(path)
        with open(path, "rb") as f:
            self.tar.addfile(ti, f)

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def hardlink(self, name, target):
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.tar.addfile(ti)

    def chardev(self, name, major, minor, mode=0o666):
        ti = self._info(name, tarfile.CHRTYPE, mode)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)

    def fifo(self, name, mode=0o644):
        self.tar.addfile(self._info(name, tarfile.FIFOTYPE, mode))

    def whiteout(self, name):
        self.file(name, b"", mode=0o644)

    def finish(self, compression="gzip"):
        """Closes the tar, compresses it; returns (descriptor, diff_id, history)."""
        self.tar.close()
        self.fobj.close()
        diff_id = sha256_file(self.path)
        if compression == "none":
            out, media_type = self.path, MT_LAYER_TAR
        elif compression == "gzip":
            out, media_type = self.path + ".gz", MT_LAYER_GZIP
            gzip_file(self.path, out)
        elif compression == "zstd":
            out, media_type = self.path + ".zst", MT_LAYER_ZSTD
            subprocess.run(["zstd", "-q", "-f", "-3", "--no-progress", self.path, "-o", out], check=True)
        else:
            raise ValueError(compression)
        desc = self.layout.add_file(out, media_type, diff_id if out == self.path else None)
        if out != self.path:
            os.unlink(self.path)
        return LayerRef(desc, "sha256:" + diff_id, self.comment)


class LayerRef:
    def __init__(self, desc, diff_id, comment):
        self.desc, self.diff_id, self.comment = desc, diff_id, comment


def gzip_file(src, dst):
    """gzip without name/timestamp: pigz (parallel) if present, else gzip, else python."""
    for tool in (["pigz", "-n", "-6", "-c"], ["gzip", "-n", "-6", "-c"]):
        if shutil.which(tool[0]):
            with open(dst, "wb") as out:
                subprocess.run(tool + [src], stdout=out, check=True)
            return
    with open(src, "rb") as i, open(dst, "wb") as o:
        with gzip.GzipFile(filename="", mode="wb", fileobj=o, mtime=0, compresslevel=6) as g:
            shutil.copyfileobj(i, g, 1 << 20)


def busybox_applets(busybox):
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({a for a in out.split() if a and a != "busybox" and "/" not in a})


def add_busybox_rootfs(layer, busybox):
    """The busybox rootfs shared by every image (see README.md)."""
    for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755)]:
        layer.dir(d, mode)
    layer.dir("home/app", 0o755, uid=1000, gid=1000)
    for d, mode in [("proc", 0o555), ("root", 0o700), ("sbin", 0o755), ("srv", 0o755),
                    ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755), ("usr/bin", 0o755),
                    ("usr/sbin", 0o755), ("usr/local", 0o755), ("usr/local/bin", 0o755),
                    ("var", 0o755), ("var/tmp", 0o1777)]:
        layer.dir(d, mode)
    layer.file_from("bin/busybox", busybox, 0o755)
    for applet in busybox_applets(busybox):
        layer.symlink("bin/" + applet, "busybox")
    layer.symlink("usr/bin/env", "../../bin/busybox")
    layer.file("etc/passwd", PASSWD)
    layer.file("etc/group", GROUP)


def config(layers, arch="amd64", variant=None, cfg=None):
    c = {"Env": [PATH_ENV], "Cmd": ["sh"]}
    if cfg is not None:
        c = cfg
    conf = {"created": CREATED, "architecture": arch}
    if variant:
        conf["variant"] = variant
    conf["os"] = "linux"
    conf["config"] = c
    conf["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in layers]}
    conf["history"] = [{"created": CREATED, "created_by": l.comment} for l in layers]
    return conf


def manifest(layout, layers, **kw):
    cfg = layout.add_json(config(layers, **kw), MT_OCI_CONFIG)
    m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": cfg,
         "layers": [l.desc for l in layers]}
    return layout.add_json(m, MT_OCI_MANIFEST)


def small_layer(layout, comment, fill):
    layer = Layer(layout, comment)
    fill(layer)
    return layer


def build(out, busybox):
    t0 = time.monotonic()
    layout = Layout(os.path.join(out, "oci"))
    catalog = []

    def image(ref, desc, push_format="oci", registries=("plain",)):
        layout.tag(ref, desc)
        catalog.append({"ref": ref, "mediaType": desc["mediaType"], "digest": desc["digest"],
                        "pushFormat": push_format, "registries": list(registries)})

    # The busybox layer every image starts from.
    bb = Layer(layout, "busybox rootfs")
    add_busybox_rootfs(bb, busybox)
    busybox_layer = bb.finish("gzip")

    # busybox:latest (pushed as Docker schema2) and busybox:oci: the same OCI manifest here.
    bb_manifest = manifest(layout, [busybox_layer])
    image("busybox:latest", bb_manifest, push_format="v2s2", registries=("plain", "auth"))
    image("busybox:oci", bb_manifest)

    # busybox:multi: index of three platforms, each with /etc/platform.
    platforms = []
    for arch, variant in [("amd64", None), ("arm64", "v8"), ("arm", "v7")]:
        text = "linux/" + arch + ("/" + variant if variant else "")
        pl = small_layer(layout, "platform " + text,
                         lambda l, text=text: (l.dir("etc"), l.file("etc/platform", text))).finish()
        m = manifest(layout, [busybox_layer, pl], arch=arch, variant=variant)
        plat = {"architecture": arch, "os": "linux"}
        if variant:
            plat["variant"] = variant
        platforms.append(dict(m, platform=plat))
    index = layout.add_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": platforms},
                            MT_OCI_INDEX)
    image("busybox:multi", index)

    # layers:latest: whiteouts, opaque dirs, links, special files across three layers.
    l1 = Layer(layout, "layers: busybox rootfs + /data")
    add_busybox_rootfs(l1, busybox)
    l1.dir("data")
    l1.file("data/keep.txt", "keep")
    l1.file("data/remove-me.txt", "gone")
    l1.dir("data/dir-to-remove")
    l1.file("data/dir-to-remove/a.txt", "a")
    l1.dir("data/opaque")
    l1.file("data/opaque/old.txt", "old")
    l1.file("data/replaced.txt", "v1")
    l2 = Layer(layout, "layers: whiteouts, opaque dir, links, special files")
    l2.dir("data")
    l2.whiteout("data/.wh.remove-me.txt")
    l2.whiteout("data/.wh.dir-to-remove")
    l2.dir("data/opaque")
    l2.whiteout("data/opaque/.wh..wh..opq")
    l2.file("data/opaque/new.txt", "new")
    l2.file("data/replaced.txt", "v2")
    l2.file("data/hardlink-src.txt", "linked")
    l2.hardlink("data/hardlink.txt", "data/hardlink-src.txt")
    l2.symlink("data/symlink", "keep.txt")
    l2.symlink("data/abs-symlink", "/etc/passwd")
    l2.file("data/setuid-bin", "#!/bin/sh\necho setuid\n", mode=0o4755)
    l2.file("data/owned.txt", "owned", mode=0o640, uid=1000, gid=1000, mtime=1600000000)
    l2.file("data/xattr.txt", "xattr", pax={"SCHILY.xattr.user.podrun": "hello"})
    l2.chardev("data/chardev", 1, 3)
    l2.fifo("data/fifo")
    l3 = Layer(layout, "layers: late whiteout")
    l3.dir("data")
    l3.whiteout("data/.wh.symlink")
    l3.file("data/late.txt", "late")
    image("layers:latest", manifest(layout, [l1.finish(), l2.finish(), l3.finish()]))

    # zstd:latest
    zl = small_layer(layout, "zstd layer",
                     lambda l: (l.dir("zstd"), l.file("zstd/hello.txt", "hello from zstd"))).finish("zstd")
    image("zstd:latest", manifest(layout, [busybox_layer, zl]))

    # plain:latest: both layers uncompressed.
    bbu = Layer(layout, "busybox rootfs")
    add_busybox_rootfs(bbu, busybox)
    pl = small_layer(layout, "plain layer",
                     lambda l: (l.dir("plain"), l.file("plain/hello.txt", "hello uncompressed")))
    image("plain:latest", manifest(layout, [bbu.finish("none"), pl.finish("none")]))

    # config:latest
    cfg = {
        "User": "1000:1000",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": [PATH_ENV, "GREETING=hi"],
        "Entrypoint": ["/bin/echo"],
        "Cmd": ["hello", "world"],
        "WorkingDir": "/srv",
        "Labels": {"org.podrun.test": "config"},
        "StopSignal": "SIGQUIT",
    }
    image("config:latest", manifest(layout, [busybox_layer], cfg=cfg))

    # evil:*: busybox + one malicious layer each; the runtime must refuse to unpack them.
    def evil(tag, fill):
        layer = small_layer(layout, "evil " + tag, fill).finish()
        image("evil:" + tag, manifest(layout, [busybox_layer, layer]))

    evil("dotdot", lambda l: l.file("../escape.txt", "escaped via ..\n"))
    evil("absolute", lambda l: l.file("/abs-escape.txt", "escaped via absolute path\n"))
    evil("symlink", lambda l: (l.symlink("lnk", "/tmp/podrun-evil-target"),
                               l.file("lnk/pwned.txt", "pwned through a symlink\n")))
    evil("hardlink", lambda l: l.hardlink("hl", "../../../../etc/hostname"))

    # big:latest: ~200 MB compressed in 5 gzip layers (seeded, so deterministic).
    rng = random.Random(20240101)
    words = ["pod", "container", "image", "layer", "overlay", "kubelet", "sandbox", "probe",
             "volume", "secret", "config", "network", "runtime", "restart", "signal", "cgroup",
             "namespace", "mount", "registry", "digest", "manifest", "index", "blob", "tar"]
    corpus = " ".join(rng.choice(words) if rng.random() < 0.7 else f"{rng.getrandbits(32):08x}"
                      for _ in range(200000)).encode()
    small = Layer(layout, "big: 20000 small files")
    small.dir("small")
    for d in range(100):
        small.dir(f"small/{d:02d}")
        for i in range(200):
            n = rng.randint(1024, 4096)
            start = rng.randrange(len(corpus) - n)
            small.file(f"small/{d:02d}/file-{i:03d}.txt", corpus[start:start + n - 1] + b"\n")
    big_layers = [busybox_layer, small.finish()]
    for n in range(3):
        layer = Layer(layout, f"big: random blobs {n}")
        layer.dir(f"random{n}")
        for j in range(3):
            layer.file(f"random{n}/blob-{j}.bin", rng.randbytes(20 * 1024 * 1024))
        big_layers.append(layer.finish())
    image("big:latest", manifest(layout, big_layers))

    layout.finish()
    with open(os.path.join(out, "catalog.json"), "w") as f:
        json.dump(catalog, f, indent=1)
    log(f"built {len(catalog)} images in {time.monotonic() - t0:.1f}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output directory (created; must not hold an older layout)")
    ap.add_argument("--busybox", default="/bin/busybox", help="static busybox binary")
    args = ap.parse_args()
    if os.path.exists(os.path.join(args.out, "oci")):
        sys.exit(f"build.py: {args.out}/oci already exists")
    os.makedirs(args.out, exist_ok=True)
    build(args.out, os.path.realpath(args.busybox))


if __name__ == "__main__":
    main()
