//! Positions for a batch's new rows: the bump statement advances each counter by the number
//! of fresh rows that need it (and locks it until COMMIT), and the pod hands the numbers out in
//! batch order. Duplicates take none, so the streams and conversations stay gapless.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::super::to_time;
use crate::backend::store::{
    InsertResult, NewMessage, Original, Positions, StoreError, COUNTER_CONVERSATION, COUNTER_STREAM,
};
use crate::protocol::{direct_conversation_id, Status};

/// Which messages of the batch take positions, and how many each counter must advance.
pub(super) struct Plan {
    /// Index for index: the counter keys of a message that takes positions (neither answered
    /// before nor a repeat in the batch), as [`keys`] gives them; `None` for the others.
    fresh: Vec<Option<Vec<(i16, String)>>>,
    /// Key -> number of fresh messages that take a position from it.
    counts: BTreeMap<(i16, String), i64>,
}

impl Plan {
    /// Plans the messages still unanswered in `results`, and answers each repeat of a
    /// `client_msg_id` earlier in the same batch as a duplicate of that message.
    pub(super) fn new(ms: &[NewMessage], results: &mut [Option<InsertResult>]) -> Plan {
        let mut plan = Plan {
            fresh: vec![None; ms.len()],
            counts: BTreeMap::new(),
        };
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, m) in ms.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            if let Some(cmid) = m.client_msg_id.as_deref() {
                if let Some(&first) = first_of.get(&(m.sender_id.as_str(), cmid)) {
                    let id = ms[first].id.clone();
                    let status = Status::None;
                    let original = None; // Known once the first one has its positions.
                    results[i] = Some(InsertResult::Duplicate {
                        id,
                        status,
                        original,
                    });
                    continue;
                }
                first_of.insert((m.sender_id.as_str(), cmid), i);
            }
            let keys = keys(m);
            for key in &keys {
                *plan.counts.entry(key.clone()).or_insert(0) += 1;
            }
            plan.fresh[i] = Some(keys);
        }
        plan
    }

    /// The bump statement's three arrays, keys in (kind, id) order.
    pub(super) fn bump_arrays(&self) -> (Vec<i16>, Vec<&str>, Vec<i64>) {
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for ((kind, id), n) in &self.counts {
            out.0.push(*kind);
            out.1.push(id.as_str());
            out.2.push(*n);
        }
        out
    }

    /// Gives every fresh message its positions, in batch order, from the counters' values
    /// after the bump (`rows`: kind, id, last). Returns them index for index.
    pub(super) fn assign(
        &self,
        ms: &[NewMessage],
        rows: &[Row],
        results: &mut [Option<InsertResult>],
    ) -> Result<Vec<Option<Positions>>, StoreError> {
        let mut next: HashMap<(i16, String), i64> = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: (i16, String) = (row.try_get(0)?, row.try_get(1)?);
            let last: i64 = row.try_get(2)?;
            let n = self.counts.get(&key).copied().unwrap_or(0);
            next.insert(key, last - n + 1);
        }
        let mut take = |key: &(i16, String)| -> Result<i64, StoreError> {
            let slot = (next.get_mut(key))
                .ok_or_else(|| StoreError::Corrupt(format!("counter {key:?} not bumped")))?;
            *slot += 1;
            Ok(*slot - 1)
        };
        let mut fresh = vec![None; ms.len()];
        for (i, keys) in self.fresh.iter().enumerate() {
            // [recipient, (sender,) conversation]: see `keys`.
            let Some(keys) = keys else { continue };
            let rpos = take(&keys[0])?;
            let spos = match keys.len() {
                3 => take(&keys[1])?,
                _ => rpos,
            };
            let cseq = take(&keys[keys.len() - 1])?;
            let at = Positions { rpos, spos, cseq };
            fresh[i] = Some(at);
            results[i] = Some(InsertResult::Inserted { at });
        }
        Ok(fresh)
    }
}

/// Gives each repeat of a `client_msg_id` earlier in the same batch the recipient and
/// positions of that first message, assigned by now.
pub(super) fn fill_in_batch_originals(ms: &[NewMessage], results: &mut [Option<InsertResult>]) {
    for i in 0..ms.len() {
        let Some(InsertResult::Duplicate {
            id, original: None, ..
        }) = &results[i]
        else {
            continue;
        };
        let Some(first) = ms.iter().position(|m| &m.id == id) else {
            continue;
        };
        if let Some(InsertResult::Inserted { at }) = results[first] {
            let reciever_id = ms[first].reciever_id.clone();
            if let Some(InsertResult::Duplicate { original, .. }) = &mut results[i] {
                *original = Some(Original { reciever_id, at });
            }
        }
    }
}

/// A message's counter keys: recipient's stream, sender's stream (unless the same), and the
/// conversation.
fn keys(m: &NewMessage) -> Vec<(i16, String)> {
    let mut k = vec![(COUNTER_STREAM, m.reciever_id.clone())];
    if m.sender_id != m.reciever_id {
        k.push((COUNTER_STREAM, m.sender_id.clone()));
    }
    k.push((
        COUNTER_CONVERSATION,
        direct_conversation_id(&m.sender_id, &m.reciever_id),
    ));
    k
}

/// The insert statement's column arrays, for the rows `assign` gave positions.
pub(super) struct Columns<'a> {
    text: [Vec<&'a str>; 4],
    cmids: Vec<Option<&'a str>>,
    created: Vec<SystemTime>,
    at: [Vec<i64>; 3],
}

impl<'a> Columns<'a> {
    pub(super) fn of(ms: &'a [NewMessage], fresh: &[Option<Positions>]) -> Columns<'a> {
        let mut c = Columns {
            text: Default::default(),
            cmids: Vec::new(),
            created: Vec::new(),
            at: Default::default(),
        };
        for (m, at) in ms.iter().zip(fresh) {
            let Some(at) = at else { continue };
            let fields = [&m.id, &m.sender_id, &m.reciever_id, &m.payload];
            for (column, value) in c.text.iter_mut().zip(fields) {
                column.push(value.as_str());
            }
            c.cmids.push(m.client_msg_id.as_deref());
            c.created.push(to_time(m.created_at));
            for (column, value) in c.at.iter_mut().zip([at.rpos, at.spos, at.cseq]) {
                column.push(value);
            }
        }
        c
    }

    /// In `INSERT_SQL`'s parameter order.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        let [id, sender, recipient, payload] = &self.text;
        let [rpos, spos, cseq] = &self.at;
        [
            id,
            sender,
            recipient,
            &self.cmids,
            payload,
            &self.created,
            rpos,
            spos,
            cseq,
        ]
    }
}
