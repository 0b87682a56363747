//! Tools for the tests and benchmarks, not the product: an in-process SMTP server, a synthetic
//! transfer log. Compiled only with the `testkit` feature.

pub mod smtp_sink;
pub mod store_suite;
pub mod synthetic;
