//! Link the per-pod binaries (podrun-monitor, podrun-pause) so that each pod's
//! copy costs as few private pages as can be.
//!
//! Both are position-dependent executables: in a PIE, every page of relocated
//! data (vtables, string tables) becomes private dirty memory in each process,
//! about 450 KiB per monitor; without PIE those pages stay clean and are shared
//! by every pod's copy.
//!
//! podrun-pause has its own `_start` and makes raw system calls (see its
//! source), so it is linked without start files and static: no dynamic loader
//! and no C library's data in the process, about 16 KiB of private memory in
//! all. rustc links every program against the shared C library (`-lc`, `-lgcc_s`,
//! …, after `-Bdynamic`); the standard library's unused code still names C
//! functions, so those names are resolved from the static archives instead: a
//! directory of `lib<name>.a` links to them comes before the system's on the
//! search path. Without the archives the binary still works (nothing calls
//! those functions) but is left with a dynamic section and unresolved imports.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for bin in ["podrun-monitor", "podrun-pause"] {
        println!("cargo:rustc-link-arg-bin={bin}=-no-pie");
    }
    for arg in ["-nostartfiles", "-static"] {
        println!("cargo:rustc-link-arg-bin=podrun-pause={arg}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    match static_libs(&out.join("static")) {
        Ok(dir) => println!("cargo:rustc-link-arg-bin=podrun-pause=-L{}", dir.display()),
        Err(e) => println!(
            "cargo:warning=podrun-pause: no static C library ({e}): linked with unresolved imports"
        ),
    }
}

/// A directory where `-lc`, `-lm`, … and `-lgcc_s` find static archives.
fn static_libs(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for name in ["c", "m", "pthread", "dl", "rt", "util"] {
        let file = format!("lib{name}.a");
        let target = compiler_file(&file)?;
        let link = dir.join(&file);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| format!("{}: {e}", link.display()))?;
    }
    // libgcc_s's static counterpart is libgcc_eh (unwinding) with libgcc.
    let script = format!(
        "GROUP({} {})\n",
        compiler_file("libgcc_eh.a")?.display(),
        compiler_file("libgcc.a")?.display()
    );
    let link = dir.join("libgcc_s.a");
    std::fs::write(&link, script).map_err(|e| format!("{}: {e}", link.display()))?;
    Ok(dir.to_path_buf())
}

/// Where the C compiler finds library `file`.
fn compiler_file(file: &str) -> Result<PathBuf, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg(format!("-print-file-name={file}"))
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // An unknown file is printed back as its bare name.
    if path.is_absolute() && path.exists() {
        Ok(path)
    } else {
        Err(format!("{file} not found"))
    }
}
