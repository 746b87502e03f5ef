//! Embeds the console's static files (src/console/, listed in its FILES)
//! into the binary: one `(path, bytes)` table, generated, so the list is
//! kept in one place and a file missing from the tree fails the build.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("src/console");
    println!("cargo:rerun-if-changed={}", dir.display());
    let list = dir.join("FILES");
    println!("cargo:rerun-if-changed={}", list.display());
    let names: Vec<String> = std::fs::read_to_string(&list)
        .map(|text| {
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
        })
        .unwrap_or_default();
    let mut code = String::from(
        "/// The console's files: (path under src/console, contents).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for name in &names {
        let path = dir.join(name);
        assert!(path.is_file(), "src/console/FILES lists {name}, which is not a file");
        println!("cargo:rerun-if-changed={}", path.display());
        code.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("console_files.rs");
    std::fs::write(out, code).expect("write console_files.rs");
}
