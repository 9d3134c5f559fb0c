//! Makes this fixture's types look as if they came from connector-api itself, so that the
//! host's layout check gets past the package name to the real difference: the signature of
//! `open`. That is what a plugin built against an incompatible connector-api looks like.

fn main() {
    println!("cargo:rustc-env=CARGO_PKG_NAME=acdlink-connector-api");
}
