//! The pure policy core: markings, envelopes, the registry of organisations, purposes and
//! agreements, subject references, and the decision itself. No IO, no clock, no randomness:
//! everything the core needs is passed in, so every rule is tested without a socket.

pub mod calendar;
pub(crate) mod choices;
pub mod decision;
pub(crate) mod delivery;
pub mod envelope;
pub mod explain;
pub mod feedback;
mod fields;
pub mod ids;
pub(crate) mod inbound;
pub mod info_request;
pub mod lawful;
pub mod marking;
pub mod policy;
pub mod registry;
pub mod subject;
pub(crate) mod wire;
