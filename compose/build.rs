//! Generates libsolv bindings against the system libsolv + libsolvext (rpm-md support).
//! Fails the build when pkg-config cannot find them: a bundled libsolv would lack rpm-md and RPM semantics.

fn main() {
    let mut includes = Vec::new();
    for lib in ["libsolv", "libsolvext"] {
        let found = pkg_config::Config::new()
            .atleast_version("0.7.20")
            .probe(lib)
            .unwrap_or_else(|e| {
                panic!("system {lib} not found via pkg-config (run ci/setup: libsolv-dev libsolvext-dev): {e}")
            });
        includes.extend(found.include_paths);
    }
    println!("cargo:rerun-if-changed=src/solve/wrapper.h");
    let bindings = bindgen::Builder::default()
        .header("src/solve/wrapper.h")
        .clang_args(includes.iter().map(|p| format!("-I{}", p.display())))
        .allowlist_function("(pool|repo|solver|queue|solv|solvable|selection|transaction|map|testcase)_.*")
        .allowlist_type("(Pool|Repo|Solver|Queue|Solvable|Transaction|Map|Id|Offset|solv_knownid)")
        .allowlist_var("(DISTTYPE|SOLVER|REPO|SELECTION|EVRCMP|SOLVABLE|REL|POOL|TRANSACTION)_.*")
        .allowlist_var("(SOLVABLE|REPOSITORY|ID)_.*")
        .rustified_enum("none")
        .generate()
        .expect("generating libsolv bindings");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("solv_bindings.rs");
    bindings.write_to_file(out).expect("writing libsolv bindings");
}
