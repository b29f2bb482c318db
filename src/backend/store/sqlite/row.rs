//! How ids and statuses are stored in the embedded schema (migration 0003): a pod-assigned
//! UUID as its 16 bytes, any other id as the text it was given; statuses as 0, 1, 2.
//! Smaller keys make every index entry smaller, and the store still hands back each id
//! exactly as it came in.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::protocol::Status;

/// A message id as a query parameter.
pub enum StoredId<'a> {
    Uuid([u8; 16]),
    Text(&'a str),
}

impl<'a> StoredId<'a> {
    /// Compact only when the text is exactly the canonical form (lowercase, hyphenated), so
    /// reading it back gives the same string; `"01A2…"` or `"m1"` stay text.
    pub fn of(id: &'a str) -> StoredId<'a> {
        if id.len() == 36 {
            if let Ok(u) = uuid::Uuid::try_parse(id) {
                let mut buf = [0u8; 36];
                if u.hyphenated().encode_lower(&mut buf).as_bytes() == id.as_bytes() {
                    return StoredId::Uuid(*u.as_bytes());
                }
            }
        }
        StoredId::Text(id)
    }
}

impl ToSql for StoredId<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            StoredId::Uuid(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            StoredId::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

/// An id read back from the `id` column.
pub struct IdText(pub String);

impl FromSql for IdText {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Blob(b) => uuid::Uuid::from_slice(b)
                .map(|u| IdText(u.hyphenated().to_string()))
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| IdText(s.to_owned()))
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// A status column back into a [`Status`]: 0, 1, 2 as the schema's CHECK allows (the
/// statements write the numbers as literals); anything else is corruption.
pub struct StoredStatus(pub Status);

impl FromSql for StoredStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_i64()? {
            0 => Ok(StoredStatus(Status::None)),
            1 => Ok(StoredStatus(Status::Sent)),
            2 => Ok(StoredStatus(Status::Delivered)),
            n => Err(FromSqlError::OutOfRange(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_uuid_form_is_compacted() {
        let id = "01a220d3-e489-7599-9ae4-000000000001";
        assert!(matches!(StoredId::of(id), StoredId::Uuid(_)));
        for other in [
            "01A220D3-E489-7599-9AE4-000000000001",
            "01a220d3e48975999ae4000000000001",
            "m1",
            "",
        ] {
            assert!(matches!(StoredId::of(other), StoredId::Text(t) if t == other));
        }
    }

    #[test]
    fn ids_read_back_as_they_were_given() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        for id in ["01a220d3-e489-7599-9ae4-000000000001", "m1", "01A220D3-x"] {
            let back: IdText = db
                .query_row("SELECT ?1", [StoredId::of(id)], |r| r.get(0))
                .unwrap();
            assert_eq!(back.0, id);
        }
    }

    #[test]
    fn an_unknown_status_number_is_an_error() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let bad = db.query_row("SELECT 7", [], |r| r.get::<_, StoredStatus>(0));
        assert!(bad.is_err());
        for (n, s) in [(0, Status::None), (1, Status::Sent), (2, Status::Delivered)] {
            let back: StoredStatus = db.query_row("SELECT ?1", [n], |r| r.get(0)).unwrap();
            assert_eq!(back.0, s);
        }
    }
}
