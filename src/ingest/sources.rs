//! Per-source limits on the API listener: how many connections, and how many unfinished TLS
//! handshakes, one client address may hold at once. The global limit (`limits.max_connections`)
//! protects the gateway; these protect its other clients: without them, one address opening a
//! few hundred connections and never finishing the handshake holds every permit until each
//! handshake times out, and legitimate agency systems wait in the backlog.
//!
//! IPv6 clients are counted per /64 (one host usually has a whole /64 to pick addresses from);
//! IPv4 clients per address (a council's NAT may put many systems behind one, which is what the
//! connection limit's default allows for).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::metrics::SourceLimit;

/// The key a client address is counted under.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

#[derive(Default)]
struct Count {
    connections: usize,
    handshakes: usize,
}

/// The open connections and handshakes of every source. Clones share the counts.
#[derive(Clone)]
pub struct Sources {
    counts: Arc<Mutex<HashMap<IpAddr, Count>>>,
    max_connections: usize,
    max_handshakes: usize,
}

impl Sources {
    pub fn new(max_connections: usize, max_handshakes: usize) -> Self {
        Sources {
            counts: Arc::default(),
            max_connections,
            max_handshakes,
        }
    }

    /// Admits a new connection from `ip` (in its handshake), or says which limit it is at.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, SourceLimit> {
        let key = source_of(ip);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = counts.entry(key).or_default();
        if c.connections >= self.max_connections {
            return Err(SourceLimit::Connections);
        }
        if c.handshakes >= self.max_handshakes {
            return Err(SourceLimit::Handshakes);
        }
        c.connections += 1;
        c.handshakes += 1;
        Ok(Slot {
            sources: self.clone(),
            key,
            handshaking: true,
        })
    }

    fn release(&self, key: IpAddr, handshaking: bool) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = counts.get_mut(&key) {
            c.connections = c.connections.saturating_sub(1);
            if handshaking {
                c.handshakes = c.handshakes.saturating_sub(1);
            }
            if c.connections == 0 {
                counts.remove(&key);
            }
        }
    }

    /// Sources being tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// One admitted connection; dropping it gives its place back.
pub struct Slot {
    sources: Sources,
    key: IpAddr,
    handshaking: bool,
}

impl Slot {
    /// The handshake is over (either way): the connection no longer counts as a handshake.
    pub fn handshake_done(&mut self) {
        if self.handshaking {
            self.handshaking = false;
            let mut counts = self
                .sources
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = counts.get_mut(&self.key) {
                c.handshakes = c.handshakes.saturating_sub(1);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.sources.release(self.key, self.handshaking);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let s = Sources::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut first = s.admit(a).unwrap();
        let _second = s.admit(a).unwrap();
        assert_eq!(s.admit(a).err(), Some(SourceLimit::Handshakes));
        assert!(s.admit(b).is_ok(), "another source is not affected");
        first.handshake_done();
        let third = s.admit(a).unwrap();
        assert_eq!(s.admit(a).err(), Some(SourceLimit::Connections));
        drop(third);
        drop(first);
        assert!(s.admit(a).is_ok());
    }

    #[test]
    fn ipv6_hosts_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let s = Sources::new(1, 1);
        let _x = s.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(s.admit("2001:db8:1:2:ffff::9".parse().unwrap()).is_err());
        assert!(s.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _v4 = s.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert!(s.admit("::ffff:192.0.2.7".parse().unwrap()).is_err());
    }

    #[test]
    fn counts_are_forgotten_when_a_source_has_nothing_open() {
        let s = Sources::new(4, 4);
        let slot = s.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(s.tracked(), 1);
        drop(slot);
        assert_eq!(s.tracked(), 0);
    }
}
