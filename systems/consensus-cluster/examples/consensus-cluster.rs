//! Runs a local consensus cluster over TCP, kills its leader and reports the recovery:
//!
//! ```text
//! cargo run --release --example consensus-cluster -- --nodes 5
//! ```
//!
//! The same program as the `consensus-cluster` binary; see `selfman_consensus_cluster::cli`.

fn main() -> std::process::ExitCode {
    selfman_consensus_cluster::cli::main()
}
