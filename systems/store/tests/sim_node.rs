//! `build_store_node` on simulated hosts: four store nodes (f = 4) in the deterministic
//! simulator, each with a `Backend`, join one ring; jobs submitted at different nodes then
//! write and read keys through transactions, replication and the ring. Several seeds, each
//! replayable: `cargo test -p selfman-store --test sim_node` prints the failing seed.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::{Host, NodeAddr, ProvidedRef};
use selfman_ports::{HostId, Ring, RingRequest};
use selfman_sim::Simulation;
use selfman_store::backend::{Backend, BackendStats, Done, Job, StoreService};
use selfman_store::command::{Op, SetCondition};
use selfman_store::node::{build_store_node, StoreNodeConfig, StorePayload};
use selfman_store::resp::Reply;

type Services = Arc<Mutex<Vec<ProvidedRef<StoreService>>>>;

fn cluster(seed: u64, n: u32) -> (Simulation, Services, Vec<NodeAddr>) {
    let sim = Simulation::new(seed);
    let services: Services = Arc::new(Mutex::new(Vec::new()));
    let mut first: Option<NodeAddr> = None;
    let mut addrs = Vec::new();
    for i in 0..n {
        let s = Arc::clone(&services);
        let access = first;
        let addr = sim
            .add_node(move |h| {
                // The first node of each sector takes its anchor; a fifth node an inner position.
                let attempt = if i < 4 { 0 } else { 1 + i };
                let config = StoreNodeConfig {
                    host: HostId(i),
                    attempt,
                    salt: u64::from(i),
                    replicas: 4,
                    ..StoreNodeConfig::default()
                };
                let node = build_store_node(h, &config)?;
                let stats = Arc::new(BackendStats::default());
                let backend_config = config.backend();
                let backend = h.create(move || Backend::new(backend_config, Arc::clone(&stats)))?;
                node.connect_backend(h, &backend)?;
                s.lock().unwrap().push(backend.provided()?);
                let req = match access {
                    None => RingRequest::Bootstrap,
                    Some(a) => RingRequest::Join { access: a },
                };
                node.ring.provided::<Ring<StorePayload>>()?.request(req)?;
                Ok(())
            })
            .expect("a store node");
        first.get_or_insert(addr);
        addrs.push(addr);
        sim.run_for(Duration::from_secs(2));
    }
    sim.run_for(Duration::from_secs(5));
    (sim, services, addrs)
}

/// Submits `ops` at node `at` as one job and runs the simulation until it is answered.
fn job(sim: &Simulation, services: &Services, at: usize, ops: Vec<Op>) -> Done {
    let (reply, answer) = mpsc::channel();
    let service = services.lock().unwrap()[at].clone();
    service.request(Job { ops, watched: Vec::new(), reply: reply.into() }).expect("submit a job");
    for _ in 0..200 {
        sim.run_for(Duration::from_millis(100));
        if let Ok(done) = answer.try_recv() {
            return done;
        }
    }
    panic!("no answer within 20 virtual seconds")
}

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[test]
fn store_nodes_in_the_simulator_commit_and_read_through_every_node() {
    for seed in 1..=20u64 {
        let (sim, services, _) = cluster(seed, 4);
        let set =
            Op::Set { key: k("a"), value: k("1"), condition: SetCondition::Always, get_old: false };
        let done = job(
            &sim,
            &services,
            0,
            vec![set, Op::MSet { pairs: vec![(k("b"), k("2")), (k("c"), k("3"))] }],
        );
        assert_eq!(done.result, Ok(vec![Reply::ok(), Reply::ok()]), "seed {seed}");
        for at in 0..4 {
            let done = job(
                &sim,
                &services,
                at,
                vec![Op::MGet { keys: vec![k("a"), k("b"), k("c"), k("d")] }],
            );
            let want = Reply::Array(vec![
                Reply::bulk("1"),
                Reply::bulk("2"),
                Reply::bulk("3"),
                Reply::Null,
            ]);
            assert_eq!(done.result, Ok(vec![want]), "seed {seed}, node {at}");
        }
        for i in 0..8 {
            let done = job(&sim, &services, i % 4, vec![Op::IncrBy { key: k("n"), by: 1 }]);
            assert_eq!(
                done.result,
                Ok(vec![Reply::Integer(i as i64 + 1)]),
                "seed {seed}, increment {i}"
            );
        }
    }
}

#[test]
fn a_crashed_node_loses_no_committed_write() {
    for seed in 1..=10u64 {
        let (sim, services, addrs) = cluster(seed, 5);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            (0..20).map(|i| (k(&format!("key{i}")), k(&format!("v{i}")))).collect();
        let done = job(&sim, &services, 1, vec![Op::MSet { pairs: pairs.clone() }]);
        assert_eq!(done.result, Ok(vec![Reply::ok()]), "seed {seed}");
        sim.crash(addrs[3]).expect("crash node 3");
        sim.run_for(Duration::from_secs(5));
        for at in [0, 1, 2, 4] {
            let keys = pairs.iter().map(|(k, _)| k.clone()).collect();
            let done = job(&sim, &services, at, vec![Op::MGet { keys }]);
            let want = Reply::Array(pairs.iter().map(|(_, v)| Reply::bulk(v)).collect());
            assert_eq!(done.result, Ok(vec![want]), "seed {seed}: node {at} after the crash");
            let incr = job(&sim, &services, at, vec![Op::IncrBy { key: k("n"), by: 1 }]);
            assert!(
                incr.result.is_ok(),
                "seed {seed}: node {at} commits after the crash: {incr:?}"
            );
        }
    }
}
