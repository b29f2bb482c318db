//! Positions for a batch's new rows, computed in the pod under the counters' row locks (see
//! `LOCK_SQL`): duplicates take none, so the streams and conversations stay gapless.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::super::to_time;
use crate::backend::store::{
    InsertResult, NewMessage, Positions, StoreError, COUNTER_CONVERSATION, COUNTER_STREAM,
};
use crate::protocol::{direct_conversation_id, Status};

/// The batch's counters: every key its messages need, their locked values, and what the
/// batch bumped.
pub(super) struct Counters {
    /// Key -> (last position, bumped by this batch).
    last: BTreeMap<(i16, String), (i64, bool)>,
}

impl Counters {
    pub(super) fn of(ms: &[NewMessage]) -> Counters {
        let mut last = BTreeMap::new();
        for m in ms {
            for key in keys(m) {
                last.insert(key, (0, false));
            }
        }
        Counters { last }
    }

    /// The keys as the lock statement's two arrays, each key once.
    pub(super) fn lock_keys(&self) -> (Vec<i16>, Vec<&str>) {
        self.last.keys().map(|(k, id)| (*k, id.as_str())).unzip()
    }

    /// Takes the locked values the lock statement returned.
    pub(super) fn read(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        for row in rows {
            let key: (i16, String) = (row.try_get(0)?, row.try_get(1)?);
            let value: i64 = row.try_get(2)?;
            match self.last.get_mut(&key) {
                Some(slot) => slot.0 = value,
                None => return Err(StoreError::Corrupt(format!("unasked counter {key:?}"))),
            }
        }
        Ok(())
    }

    fn bump(&mut self, key: (i16, String)) -> i64 {
        let slot = self.last.entry(key).or_insert((0, false));
        slot.0 += 1;
        slot.1 = true;
        slot.0
    }

    /// The bumped counters as the bump statement's three arrays.
    pub(super) fn bumped(&self) -> (Vec<i16>, Vec<&str>, Vec<i64>) {
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for ((kind, id), (last, bumped)) in &self.last {
            if *bumped {
                out.0.push(*kind);
                out.1.push(id.as_str());
                out.2.push(*last);
            }
        }
        out
    }
}

/// A message's counter keys: recipient's stream, sender's stream (unless the same), and the
/// conversation.
fn keys(m: &NewMessage) -> Vec<(i16, String)> {
    let mut k = vec![(COUNTER_STREAM, m.reciever_id.clone())];
    if m.sender_id != m.reciever_id {
        k.push((COUNTER_STREAM, m.sender_id.clone()));
    }
    let conversation = direct_conversation_id(&m.sender_id, &m.reciever_id);
    k.push((COUNTER_CONVERSATION, conversation));
    k
}

/// Gives every message not yet answered (neither stored before nor a stored duplicate) its
/// positions, in batch order; a repeat of a `client_msg_id` earlier in the same batch is a
/// duplicate of that message. Returns the positions of the rows to insert, index for index.
pub(super) fn assign(
    ms: &[NewMessage],
    results: &mut [Option<InsertResult>],
    counters: &mut Counters,
) -> Vec<Option<Positions>> {
    let mut fresh = vec![None; ms.len()];
    let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, m) in ms.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        if let Some(cmid) = m.client_msg_id.as_deref() {
            if let Some(&first) = first_of.get(&(m.sender_id.as_str(), cmid)) {
                let id = ms[first].id.clone();
                results[i] = Some(InsertResult::Duplicate {
                    id,
                    status: Status::None,
                });
                continue;
            }
            first_of.insert((m.sender_id.as_str(), cmid), i);
        }
        let rpos = counters.bump((COUNTER_STREAM, m.reciever_id.clone()));
        let spos = match m.sender_id == m.reciever_id {
            true => rpos,
            false => counters.bump((COUNTER_STREAM, m.sender_id.clone())),
        };
        let conversation = direct_conversation_id(&m.sender_id, &m.reciever_id);
        let cseq = counters.bump((COUNTER_CONVERSATION, conversation));
        let at = Positions { rpos, spos, cseq };
        fresh[i] = Some(at);
        results[i] = Some(InsertResult::Inserted { at });
    }
    fresh
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
