//! Skiff's sandbox ("pause") program: the first process of every pod sandbox. It holds the
//! pod's namespaces open and does nothing else: it exits 0 on SIGINT or SIGTERM and, being
//! PID 1 when the pod shares one PID namespace, reaps the zombies that get re-parented to it.
//!
//! Built by skiff-cri's build.rs with plain `rustc` (no crates) as a static glibc binary, so
//! it runs in an image whose root holds nothing but this file.
//!
//! It waits for signals synchronously (all three blocked, then `sigwaitinfo`) rather than in
//! handlers: nothing async-signal-unsafe can run, and blocked signals reach PID 1 even though
//! the kernel drops default-action signals sent to a namespace's init.
//!
//! The only `unsafe` is the five libc calls below: std has no signal API.

use std::ffi::c_int;
use std::io::Write;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const SIG_BLOCK: c_int = 0;
const WNOHANG: c_int = 1;
const EINTR: i32 = 4;

/// glibc's `sigset_t`: 1024 bits.
#[repr(C)]
struct SigSet([u64; 16]);

unsafe extern "C" {
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, signo: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut u8) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
}

fn main() {
    if let Some(arg) = std::env::args().nth(1) {
        if arg == "-v" {
            println!("skiff-pause {}", env!("SKIFF_PAUSE_VERSION"));
            return;
        }
    }
    if std::process::id() != 1 {
        eprintln!("skiff-pause: warning: not running as PID 1 (pid {})", std::process::id());
    }

    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a live, properly sized sigset_t; the signal numbers are valid.
    let blocked = unsafe {
        sigemptyset(&mut set) == 0
            && sigaddset(&mut set, SIGINT) == 0
            && sigaddset(&mut set, SIGTERM) == 0
            && sigaddset(&mut set, SIGCHLD) == 0
            && sigprocmask(SIG_BLOCK, &set, std::ptr::null_mut()) == 0
    };
    if !blocked {
        eprintln!("skiff-pause: blocking signals: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }

    loop {
        // SAFETY: `set` is initialised above; a null siginfo pointer is allowed.
        let signo = unsafe { sigwaitinfo(&set, std::ptr::null_mut()) };
        match signo {
            SIGINT | SIGTERM => {
                let name = if signo == SIGINT { "SIGINT" } else { "SIGTERM" };
                let _ = writeln!(std::io::stderr(), "skiff-pause: shutting down on {name}");
                std::process::exit(0);
            }
            SIGCHLD => reap(),
            // EINTR (e.g. SIGSTOP/SIGCONT) or a signal we did not ask for: wait again.
            _ => {}
        }
    }
}

/// Collects every exited child; several exits may share one pending SIGCHLD.
fn reap() {
    loop {
        // SAFETY: a null status pointer is allowed.
        let pid = unsafe { waitpid(-1, std::ptr::null_mut(), WNOHANG) };
        let interrupted =
            pid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(EINTR);
        // > 0: one reaped, look for more; 0: children left, none exited; ECHILD: none left.
        if pid <= 0 && !interrupted {
            return;
        }
    }
}
