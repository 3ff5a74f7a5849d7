//! The reference implementations the contract's statistics are checked against run in Python
//! from PyPI (SciPy, pycocotools): `scripts/test-services.sh` installs them in a venv and
//! exports `EDGEML_TEST_SCIPY_PYTHON`; without it `python3` is used, and a test fails (never
//! skips) when that lacks the package.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

/// Run `tests/<script>` with `input` on its stdin and return its stdout; `needs` names the
/// package for the failure message.
pub fn reference_python(script: &str, input: &str, needs: &str) -> String {
    let python = std::env::var("EDGEML_TEST_SCIPY_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} {script} failed ({needs} from PyPI is needed: `source scripts/test-services.sh` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
