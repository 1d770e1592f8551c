//! The process-global registry of running transports, by listening address: how a sender
//! finds out that its destination lives in the same process (and gets it the message as a
//! value, without serialising).
//!
//! Entries are weak: a transport that is gone is simply not found. A transport removes its own
//! entry when it shuts down, and never another transport's (a later one may reuse the port).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use crate::shared::Shared;

type Map = Mutex<HashMap<SocketAddr, Weak<Shared>>>;

fn map() -> &'static Map {
    static MAP: OnceLock<Map> = OnceLock::new();
    MAP.get_or_init(Map::default)
}

pub(crate) fn register(shared: &Arc<Shared>) {
    map().lock().insert(shared.local.addr, Arc::downgrade(shared));
}

pub(crate) fn unregister(shared: &Arc<Shared>) {
    let mut m = map().lock();
    if m.get(&shared.local.addr).is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(shared))) {
        m.remove(&shared.local.addr);
    }
}

pub(crate) fn lookup(addr: SocketAddr) -> Option<Arc<Shared>> {
    map().lock().get(&addr).and_then(Weak::upgrade)
}
