//! The transfer log's records and their checking: what a record holds (`record`), how records
//! chain, and the pure verification behind `postern log verify` ([`verify`]). The store appends
//! records and keeps checkpoints ([`crate::store`]); nothing here does IO beyond key files.

pub(crate) mod key;
pub(crate) mod record;
pub mod verify;

pub use record::*;
