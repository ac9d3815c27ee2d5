//! Rebuilds the object when lb-common (the map ABI) changes.
fn main() {
    println!("cargo:rerun-if-changed=../lb-common/src");
}
