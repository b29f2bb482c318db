//! Schema creation and versioned migrations, safe with many pods starting at once.

use tokio_postgres::{Client, Transaction};

use super::{describe, quote_ident, schema_key};
use crate::backend::store::StoreError;

/// Versioned migrations, applied in order, each exactly once (recorded in `schema_migrations`).
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../../migrations/postgres/0001_messages.sql"),
    ),
    (
        2,
        include_str!("../../../../migrations/postgres/0002_recipient_order.sql"),
    ),
    (
        3,
        include_str!("../../../../migrations/postgres/0003_status_outbox.sql"),
    ),
    (
        4,
        include_str!("../../../../migrations/postgres/0004_streams.sql"),
    ),
    (
        5,
        include_str!("../../../../migrations/postgres/0005_byte_order_keys.sql"),
    ),
    (
        6,
        include_str!("../../../../migrations/postgres/0006_groups.sql"),
    ),
    (
        7,
        include_str!("../../../../migrations/postgres/0007_presence.sql"),
    ),
    (
        8,
        include_str!("../../../../migrations/postgres/0008_marks.sql"),
    ),
    (
        9,
        include_str!("../../../../migrations/postgres/0009_conversation_order.sql"),
    ),
    (
        10,
        include_str!("../../../../migrations/postgres/0010_parked_rechecked.sql"),
    ),
];

/// Advisory lock class (first key) serializing migrations; the second key is the schema's.
const MIGRATION_LOCK: i32 = 0x6453_4d01;

/// Creates the schema and applies missing migrations in one transaction, under a lock that
/// makes concurrently starting pods take turns: the first migrates, the others then find
/// everything done. Failures before the first migration are `open_err`s.
pub(super) async fn migrate(
    client: &mut Client,
    schema: &str,
    open_err: &dyn Fn(String) -> StoreError,
) -> Result<(), StoreError> {
    let setup = |e: tokio_postgres::Error| open_err(format!("migration setup: {}", describe(&e)));
    let tx = client.transaction().await.map_err(setup)?;
    prepare(&tx, schema).await.map_err(setup)?;
    for &(version, sql) in MIGRATIONS {
        let fail = |e: tokio_postgres::Error| StoreError::Migration {
            version: version as u32,
            reason: describe(&e),
        };
        apply(&tx, version, sql).await.map_err(fail)?;
    }
    tx.commit().await.map_err(setup)
}

/// Takes the lock, then creates the schema and the migration ledger if missing.
async fn prepare(tx: &Transaction<'_>, schema: &str) -> Result<(), tokio_postgres::Error> {
    let lock = "SELECT pg_advisory_xact_lock($1, $2)";
    tx.execute(lock, &[&MIGRATION_LOCK, &schema_key(schema)])
        .await?;
    // Not `CREATE SCHEMA IF NOT EXISTS`: it demands the CREATE privilege on the database even
    // when the schema exists, which a least-privileged role owning its schema lacks.
    let exists = "SELECT 1 FROM pg_namespace WHERE nspname = $1";
    let q = quote_ident(schema);
    if tx.query_opt(exists, &[&schema]).await?.is_none() {
        tx.batch_execute(&format!("CREATE SCHEMA {q}")).await?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {q}.schema_migrations (
             version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .await
}

/// Applies one migration unless the ledger has it. Unqualified names in `sql` land in the
/// schema: the session's `search_path` is set to it.
async fn apply(tx: &Transaction<'_>, version: i32, sql: &str) -> Result<(), tokio_postgres::Error> {
    let done = "SELECT 1 FROM schema_migrations WHERE version = $1";
    if tx.query_opt(done, &[&version]).await?.is_some() {
        return Ok(());
    }
    tx.batch_execute(sql).await?;
    let record = "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())";
    tx.execute(record, &[&version]).await.map(drop)
}
