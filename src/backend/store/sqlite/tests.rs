//! SQLite-only checks; the behaviour shared with Postgres runs from `store::conformance`.

use super::*;

#[test]
fn migrations_apply_once_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path(), true).unwrap());
    let s = SqliteStore::open(dir.path(), true).unwrap();
    let n: i64 = s
        .conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, MIGRATIONS.len() as i64);
}
