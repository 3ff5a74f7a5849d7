//! The gate's McNemar test against SciPy's `binomtest` on the same discordant counts. SciPy
//! comes from PyPI: `scripts/test-services.sh` installs it in a venv and exports
//! `EDGEML_TEST_SCIPY_PYTHON`; without it the test uses `python3`, and fails (not skips)
//! when that has no SciPy.

mod common;

use contract::evidence::mcnemar_exact;

#[test]
fn mcnemar_matches_scipy() {
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
    let input: String = cases.iter().map(|(b, c)| format!("{b} {c}\n")).collect();
    let out = common::reference_python("scipy_reference.py", &input, "SciPy");
    let reference: Vec<f64> = out.lines().map(|l| l.parse().unwrap()).collect();
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
