//! The gate's McNemar test against SciPy's `binomtest` on the same discordant counts. SciPy
//! comes from PyPI: `scripts/test-services.sh` installs it in a venv and exports
//! `EDGEML_TEST_SCIPY_PYTHON`; without it the test uses `python3`, and fails (not skips)
//! when that has no SciPy.

use std::io::Write;
use std::process::{Command, Stdio};

use contract::evidence::mcnemar_exact;

#[test]
fn mcnemar_matches_scipy() {
    let python = std::env::var("EDGEML_TEST_SCIPY_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cases: Vec<(u32, u32)> = vec![(0, 0), (0, 1), (1, 0), (0, 3), (1, 4), (3, 3)];
    cases.extend([
        (2, 9),
        (9, 2),
        (12, 20),
        (17, 5),
        (40, 61),
        (100, 130),
        (480, 520),
    ]);
    cases.extend([(1400, 1530), (7, 0), (25, 24), (3, 48), (0, 60)]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scipy_reference.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let input: String = cases.iter().map(|(b, c)| format!("{b} {c}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} {script} failed (SciPy from PyPI is needed: `source scripts/test-services.sh` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(reference.len(), cases.len());
    for ((b, c), want) in cases.iter().zip(&reference) {
        let got = mcnemar_exact(*b, *c);
        let tol = 1e-12 + 1e-9 * want.abs();
        assert!(
            (got - want).abs() <= tol,
            "b={b} c={c}: ours {got:e}, SciPy {want:e}"
        );
    }
}
