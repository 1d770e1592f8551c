//! No process is left behind: after every handle is gone, this test process has no child
//! left, running or zombie. (A file of its own: it is the only test in its process, so every
//! child of the process is one of its own.)

mod common;

use std::time::Duration;

use common::{children, test_node, PATIENCE};
use selfman_launch::Cluster;

#[test]
fn no_child_process_outlives_its_handles() {
    assert_eq!(children(), Vec::<u32>::new(), "children before the test");
    let grace = Duration::from_millis(300);
    {
        let mut c = Cluster::new();
        for args in [&[][..], &["--ignore-stdin"], &["--ignore-term", "--ignore-stdin"]] {
            c.spawn(&test_node(args).grace(grace)).unwrap();
        }
        let mut lone = test_node(&["--no-ready"]).grace(grace).spawn().unwrap();
        let _quitter = test_node(&["--exit", "1"]).spawn().unwrap();
        let mut killed = test_node(&[]).spawn().unwrap();
        killed.wait_ready(PATIENCE).unwrap();
        killed.kill_9().unwrap();
        c[0].wait_ready(PATIENCE).unwrap();
        assert!(lone.wait_ready(Duration::from_millis(100)).is_err());
        assert_eq!(
            children().len(),
            5,
            "running: 3 in the cluster, lone, quitter (maybe a zombie)"
        );
    }
    assert_eq!(children(), Vec::<u32>::new(), "children left behind");
}
