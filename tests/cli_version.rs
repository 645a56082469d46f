//! `hepar version`: the build and what each backend finds on this machine.

#[test]
fn version_reports_every_backend_without_panicking() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hepar"))
        .arg("version")
        .output()
        .expect("run hepar");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for backend in ["cpu:", "ptxvm:", "cuda"] {
        assert!(text.contains(backend), "no `{backend}` line in:\n{text}");
    }
}
