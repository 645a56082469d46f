//! The `hepar` command line.

fn main() {
    println!("hepar {}", env!("CARGO_PKG_VERSION"));
}
