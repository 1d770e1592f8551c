//! Compile-fail tests: each typed promise of the port API is checked by the compiler.
//!
//! Every file in `tests/compile_fail/` is a small program that would be valid but for exactly
//! one misuse; the expected compiler output is in the matching `.stderr` file. Regenerate the
//! expectations with `TRYBUILD=overwrite cargo test -p selfman-core --test compile_fail` (and
//! read the diff: the messages are part of the user experience).

#[test]
fn typed_ports_reject_misuse() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
