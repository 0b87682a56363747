//! A value that the running gateway reads on every request and that a reload may replace
//! (the registry, the TLS configuration). Readers take a cheap snapshot; a replacement is
//! atomic, so a request never sees half of an old configuration and half of a new one, and a
//! snapshot already taken (a connection's TLS session, a request's registry) stays as it was.

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

/// A value that is never replaced, where a `Live` one is expected.
impl<T> From<Arc<T>> for Live<T> {
    fn from(value: Arc<T>) -> Self {
        Live(Arc::new(RwLock::new(value)))
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
        self.replace_arc(Arc::new(value));
    }

    /// As [`Live::replace`], with a value already shared elsewhere.
    pub fn replace_arc(&self, value: Arc<T>) {
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(p) => *p.into_inner() = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_outlives_a_replacement() {
        let live = Live::new(1);
        let reader = live.clone();
        let before = reader.current();
        live.replace(2);
        assert_eq!((*before, *reader.current()), (1, 2));
    }

    #[test]
    fn a_fixed_value_is_live_too() {
        let fixed: Live<&str> = Arc::new("fixed").into();
        assert_eq!(*fixed.current(), "fixed");
    }
}
