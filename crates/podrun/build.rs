//! Link the per-pod binaries (podrun-monitor, podrun-pause) as position-dependent
//! executables: in a PIE, every page of relocated data (vtables, string tables)
//! becomes private dirty memory in each process, about 450 KiB per monitor;
//! without PIE those pages stay clean and are shared by every pod's copy.
fn main() {
    for bin in ["podrun-monitor", "podrun-pause"] {
        println!("cargo:rustc-link-arg-bin={bin}=-no-pie");
    }
}
