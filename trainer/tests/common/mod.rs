//! Helpers shared by the trainer's integration tests.

use std::path::{Path, PathBuf};

/// The node flavour of the wasm build (`$EDGEML_WASM_PKG`, else `<target>/wasm-pkg/node`,
/// written by `scripts/build-wasm.sh`).
pub fn wasm_pkg() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.ancestors().nth(3).unwrap();
    let pkg = std::env::var_os("EDGEML_WASM_PKG")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir.join("wasm-pkg/node"));
    assert!(
        pkg.join("wasm_infer.js").exists(),
        "wasm build missing at {}: run scripts/build-wasm.sh (scripts/test.sh does)",
        pkg.display()
    );
    pkg
}

/// Run `node scripts/<script> args…` and parse what it prints as JSON.
pub fn node_json(script: &str, args: &[&Path]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    let output = std::process::Command::new("node")
        .arg(&path)
        .args(args)
        .output()
        .expect("node must be installed");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
