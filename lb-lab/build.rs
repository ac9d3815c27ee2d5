//! Copies the benchmark harness object that `lb-userspace`'s build script built (its
//! directory arrives as `DEP_LB_EBPF_OBJECTS`) so it can be embedded.
use std::{env, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var_os("DEP_LB_EBPF_OBJECTS").expect("set by lb-userspace"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let object = dir.join("lb-bench");
    println!("cargo:rerun-if-changed={}", object.display());
    std::fs::copy(&object, out.join("lb-bench.o"))
        .unwrap_or_else(|e| panic!("copy {} into OUT_DIR: {e}", object.display()));
}
