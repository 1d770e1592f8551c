//! `consensus-cluster`: see [`selfman_consensus_cluster::cli`].

fn main() -> std::process::ExitCode {
    selfman_consensus_cluster::cli::main()
}
