//! Command line only: parses arguments and calls the library.

fn main() {
    println!("hotproxy");
}
