//! What the CLI test files share: where the data is and how a run's outcome is checked.

use std::path::{Path, PathBuf};
use std::process::Output;

/// `$RAMPART_DATA`, else the shared folder beside the repository.
#[allow(dead_code)] // not every test file needs the data
pub fn data_dir() -> PathBuf {
    std::env::var_os("RAMPART_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// The stdout of a run that must succeed.
pub fn expect_ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "rampart {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A run that must fail with `needle` in its message, and without a panic.
pub fn expect_failure(args: &[&str], out: Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rampart {args:?} should fail");
    assert!(
        err.contains(needle),
        "rampart {args:?}: expected '{needle}' in: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "rampart {args:?} panicked: {err}"
    );
}

/// Kills `child` with SIGKILL once `checkpoint` has been rewritten `writes` more times (or at
/// once if it exits first). Returns whether it was killed before it could finish, and how many
/// rewrites it saw.
#[allow(dead_code)] // only the kill tests use it
pub fn kill_after_checkpoints(
    mut child: std::process::Child,
    checkpoint: &Path,
    writes: usize,
) -> (bool, usize) {
    let modified = || {
        std::fs::metadata(checkpoint)
            .and_then(|m| m.modified())
            .ok()
    };
    let start = std::time::Instant::now();
    let mut seen = 0;
    let mut last = modified();
    while seen < writes {
        let m = modified();
        if m.is_some() && m != last {
            seen += 1;
            last = m;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(start.elapsed().as_secs() < 300, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    (!child.wait().unwrap().success(), seen)
}
