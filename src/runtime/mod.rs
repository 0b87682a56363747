//! The running gateway, assembled: the daemon (listeners, worker, reload, shutdown), the ops
//! listener, operational logging, and the development material `postern demo` generates.

pub mod daemon;
pub mod devkit;
pub mod logging;
pub mod ops;
