//! The committed C header is exactly what cbindgen generates from the source, so the header is
//! reviewed like code. `REMOTEFN_BLESS=1 cargo test --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_a_fresh_generation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = root.join("include/remotefn.h");
    if std::env::var_os("REMOTEFN_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/remotefn.h");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/remotefn.h is stale: run `REMOTEFN_BLESS=1 cargo test --test header` and commit it"
    );
}
