//! Locating the example programs the tests run.

use std::path::PathBuf;

/// Path of the built example `name`. `cargo test -p ha-examples` (and `--all-targets`)
/// builds the examples before it runs the tests; a test run that selects only one
/// test target does not, so the path is checked.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example `{name}` is not built at {}: run `cargo test -p ha-examples` with the same \
         features (it builds the examples first), or `cargo build -p ha-examples --examples`",
        path.display()
    );
    path
}
