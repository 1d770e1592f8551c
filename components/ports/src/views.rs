//! A registry of components whose state checkers read at one instant: the mechanism behind
//! [`RingViews`](crate::RingViews) and [`ReplicaViews`](crate::ReplicaViews).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use selfman_core::{Component, ComponentDefinition, NodeAddr};

type ViewFn<V> = Arc<dyn Fn() -> Option<V> + Send + Sync>;

/// Registered components by node, each with the function that reads its view `V`. A component
/// that was destroyed reads as gone and is forgotten at the next snapshot.
pub(crate) struct Views<V> {
    views: Arc<Mutex<BTreeMap<NodeAddr, ViewFn<V>>>>,
}

impl<V> Clone for Views<V> {
    fn clone(&self) -> Self {
        Views { views: Arc::clone(&self.views) }
    }
}

impl<V> Default for Views<V> {
    fn default() -> Self {
        Views { views: Arc::new(Mutex::new(BTreeMap::new())) }
    }
}

impl<V: 'static> Views<V> {
    /// Registers `c` for `node` (replacing an earlier registration of that node), read by `read`.
    pub(crate) fn register<D: ComponentDefinition>(
        &self,
        node: NodeAddr,
        c: &Component<D>,
        read: fn(&D) -> V,
    ) {
        let c = c.clone();
        let f: ViewFn<V> = Arc::new(move || c.on_definition(|d| read(d)).ok());
        self.views.lock().unwrap_or_else(PoisonError::into_inner).insert(node, f);
    }

    /// The view of every registered component that still exists, by node; those gone are
    /// forgotten. Must not be called from inside a handler of a registered component.
    pub(crate) fn snapshot(&self) -> BTreeMap<NodeAddr, V> {
        let fns: Vec<(NodeAddr, ViewFn<V>)> = {
            let g = self.views.lock().unwrap_or_else(PoisonError::into_inner);
            g.iter().map(|(n, f)| (*n, Arc::clone(f))).collect()
        };
        let mut out = BTreeMap::new();
        let mut gone = Vec::new();
        for (n, f) in fns {
            match f() {
                Some(v) => {
                    out.insert(n, v);
                }
                None => gone.push(n),
            }
        }
        if !gone.is_empty() {
            let mut g = self.views.lock().unwrap_or_else(PoisonError::into_inner);
            for n in gone {
                g.remove(&n);
            }
        }
        out
    }

    /// How many components are registered (some may be gone since the last snapshot).
    pub(crate) fn len(&self) -> usize {
        self.views.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}
