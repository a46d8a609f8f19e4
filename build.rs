//! Builds `berth-init` (init/main.rs), the statically linked process 1 of containers with
//! `init: true`, which berth embeds and installs under its state root. A host without a static
//! libc (`libc.a`, Debian's libc6-dev) gets a berth whose `init: true` fails with a clear error.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=init/main.rs");
    // berth itself is linked as a fixed-address executable, as Debian's runc and
    // containerd-shim are: every container start execs it (the shim), and a position-independent
    // one spends about half a millisecond of each exec on its 44,000 relative relocations.
    // Only the binary: tests and the library stay position-independent.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bin = out.join("berth-init");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-name",
            "berth_init",
            "--target",
        ])
        .arg(&target)
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "relocation-model=static",
            "init/main.rs",
            "-o",
        ])
        .arg(&bin)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("cargo:warning=berth-init could not be built statically; init: true will fail");
        let _ = std::fs::write(&bin, b"");
    }
    // A name for the installed file that changes with its content.
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(&bin).unwrap_or_default().hash(&mut h);
    println!("cargo:rustc-env=BERTH_INIT_ID={:016x}", h.finish());
}
