//! Every seed that once failed, run again: the tables of `selfman_tests::REGRESSIONS`, one per
//! scenario family, kept beside the scenario list. When `sweep` reports a failing seed, fix the
//! cause and add the seed to its family's table.

use selfman_tests::{by_name, REGRESSIONS};

#[test]
fn every_kept_seed_still_passes() {
    let mut ran = 0;
    for &(family, table) in REGRESSIONS {
        assert!(!table.is_empty(), "{family}: an empty table checks nothing; remove it");
        for r in table {
            let e = by_name(r.scenario).unwrap_or_else(|| {
                panic!("{family}: `{}` is not a registered scenario", r.scenario)
            });
            assert!(e.must_pass, "{family}: `{}` is a broken variant: its seeds fail", e.name);
            let out = (e.build)().run_quiet(r.seed);
            assert!(out.is_ok(), "regression {} seed {} ({}): {out}", r.scenario, r.seed, r.caught);
            ran += 1;
        }
    }
    assert!(ran > 0, "no kept seed ran");
}
