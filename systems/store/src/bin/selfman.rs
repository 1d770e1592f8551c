//! `selfman`: see [`selfman_store::cli`].

fn main() -> std::process::ExitCode {
    selfman_store::cli::main()
}
