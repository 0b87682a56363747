//! Signed checkpoints of the transfer log's chain, and the retention purge.
