//! The Java client (kafka-clients 3.9, jars from tests/setup.sh in target/java-clients):
//! compiling the test programs under tests/java.

use std::path::PathBuf;
use std::process::Command;

fn java_lib() -> PathBuf {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/java-clients");
    assert!(
        lib.join("kafka-clients.jar").exists(),
        "the Java client is missing from {}: run tests/setup.sh",
        lib.display()
    );
    lib
}

/// Compiles `tests/java/<name>.java` into `out`; returns the classpath to run it with.
pub fn compile(name: &str, out: &std::path::Path) -> String {
    let lib = java_lib();
    let cp = format!("{}/*", lib.display());
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/java/{name}.java"));
    let st = Command::new("javac")
        .args(["-cp", &cp, "-d"])
        .arg(out)
        .arg(&src)
        .status()
        .expect("run javac (tests/setup.sh installs a JDK)");
    assert!(st.success(), "javac {name}");
    format!("{cp}:{}", out.display())
}

/// Compiles and runs `tests/java/<name>.java` with `args`; asserts it succeeded and returns
/// its standard output.
pub fn run(name: &str, args: &[&str]) -> String {
    let classes = tempfile::tempdir().expect("tmp");
    let cp = compile(name, classes.path());
    let out = Command::new("java")
        .args(["-cp", &cp, name])
        .args(args)
        .output()
        .expect("run java");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
