//! The fake upstream as a standalone server, for `scripts/bench`:
//! `cargo run --release --example fake_upstream -- PORT` prints the port it serves on.

#[allow(dead_code)]
#[path = "upstream.rs"]
mod upstream;
#[allow(dead_code)]
#[path = "wire.rs"]
mod wire;

fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let server = upstream::FakeUpstream::start(port);
    println!("{}", server.port);
    loop {
        std::thread::park();
    }
}
