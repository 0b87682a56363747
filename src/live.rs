//! A value that the running gateway reads on every request and that a reload may replace
//! (the registry, the TLS configuration). Readers take a cheap snapshot; a replacement is
//! atomic, so a request never sees half of an old configuration and half of a new one.

use std::sync::{Arc, RwLock};

pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(..)")
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        Live(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The current value. A poisoned lock still holds a complete value (replacement is a single
    /// pointer store), so it is used rather than turned into a panic.
    pub fn current(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn replace(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(p) => *p.into_inner() = value,
        }
    }
}
