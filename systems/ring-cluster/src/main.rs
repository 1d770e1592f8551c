//! `ring-cluster`: see [`selfman_ring_cluster::cli`].

fn main() -> std::process::ExitCode {
    selfman_ring_cluster::cli::main()
}
