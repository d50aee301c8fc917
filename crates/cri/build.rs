//! Compiles Skiff's sandbox program (pause/pause.rs) with plain `rustc` into a static
//! binary in OUT_DIR; src/image/pause.rs embeds it, so the sandbox image is built locally
//! with nothing downloaded.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The pause program's version, also the tag of Skiff's sandbox image.
const PAUSE_VERSION: &str = "3.10";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let src = PathBuf::from("pause/pause.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=build.rs");

    let binary = out.join("skiff-pause");
    let status = Command::new(&rustc)
        .env("SKIFF_PAUSE_VERSION", PAUSE_VERSION)
        .args([
            "--edition",
            "2024",
            "--crate-name",
            "skiff_pause",
            "--target",
        ])
        .arg(&target)
        .args([
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "codegen-units=1",
            "-o",
        ])
        .arg(&binary)
        .arg(&src)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "compiling {} with {rustc:?} failed ({s}); a static glibc needs libc6-dev (libc.a)",
            src.display()
        ),
        Err(e) => panic!("running {rustc:?}: {e}"),
    }
    println!("cargo:rustc-env=SKIFF_PAUSE_VERSION={PAUSE_VERSION}");
}
