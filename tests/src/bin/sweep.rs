//! `sweep`: runs a simulation scenario over many seeds (work in progress).

fn main() {
    eprintln!("sweep: no scenarios yet");
    std::process::exit(2);
}
