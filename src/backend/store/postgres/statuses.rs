//! The statuses a sender asks for (`statuses` frame): only the asker's own messages.

use tokio_postgres::Client;

use super::parse_status;
use crate::backend::store::StoreError;
use crate::protocol::Status;

const SENT_SQL: &str = "SELECT id, status FROM messages WHERE id = ANY($1) AND sender_id = $2
     UNION ALL
     SELECT id, status FROM group_messages WHERE id = ANY($1) AND sender_id = $2";

/// The status of each of `ids` that `sender` sent, in the order asked.
pub(super) async fn sent_statuses(
    client: &Client,
    sender: &str,
    ids: &[String],
) -> Result<Vec<(String, Status)>, StoreError> {
    let rows = client.query(SENT_SQL, &[&ids, &sender]).await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get(0)?;
        found.insert(id, parse_status(r.try_get::<_, &str>(1)?)?);
    }
    Ok((ids.iter())
        .filter_map(|id| found.get(id).map(|s| (id.clone(), *s)))
        .collect())
}
