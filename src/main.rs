//! The `mailguard` command line.

fn main() {
    env_logger::init();
    println!("mailguard {}", env!("CARGO_PKG_VERSION"));
}
