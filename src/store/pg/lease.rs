//! Named leases: a job that one node at a time does for the whole deployment (signing the
//! log's checkpoints, purging). The holder renews before its lease runs out; if it dies, another
//! node takes the lease once it has lapsed.

use super::PgError;

/// Takes or renews the lease `name` for `node` until `until`, if it is free, lapsed by `now`,
/// or already `node`'s; whether `node` holds it now.
pub async fn take(
    client: &tokio_postgres::Client,
    target: &str,
    name: &str,
    node: &str,
    now: &str,
    until: &str,
) -> Result<bool, PgError> {
    let held = client
        .query_opt(
            "INSERT INTO leases (name, node, until) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, until = EXCLUDED.until
             WHERE leases.node = EXCLUDED.node OR leases.until < $3
             RETURNING node",
            &[&name, &node, &now, &until],
        )
        .await
        .map_err(|e| PgError::of(target, e))?;
    Ok(held.is_some())
}

/// Gives the lease up (at a clean shutdown), so another node need not wait for it to lapse.
pub async fn release(
    client: &tokio_postgres::Client,
    target: &str,
    name: &str,
    node: &str,
) -> Result<(), PgError> {
    client
        .execute(
            "DELETE FROM leases WHERE name = $1 AND node = $2",
            &[&name, &node],
        )
        .await
        .map_err(|e| PgError::of(target, e))?;
    Ok(())
}
