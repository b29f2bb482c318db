//! A generated workload full of edge cases (duplicate keys inside and across batches, several
//! updates of one id per batch, acks by strangers, ids that do not exist), and the transcript
//! of everything a store answers to it. Two backends are equivalent on it when their
//! transcripts are equal.

use super::super::{MessageStore, NewMessage, StatusUpdate};
use crate::protocol::Status;

const USERS: [&str; 3] = ["alice", "bob", "carol"];

/// A small deterministic generator (xorshift64*): the same seed gives the same workload.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn inserts(rng: &mut Rng, batch: usize) -> Vec<NewMessage> {
    let cmids = ["k0", "k1", "k2", "k3", "k4", "k5"];
    (0..rng.below(20))
        .map(|i| NewMessage {
            id: format!("m{batch}-{i}"),
            sender_id: rng.pick(&USERS).into(),
            reciever_id: rng.pick(&USERS).into(),
            client_msg_id: (rng.below(2) == 0).then(|| rng.pick(&cmids).into()),
            payload: format!("p{batch}-{i}"),
            created_at: batch as i64 * 10,
        })
        .collect()
}

fn updates(rng: &mut Rng, batch: usize, known: &[String]) -> Vec<StatusUpdate> {
    let statuses = [Status::None, Status::Sent, Status::Delivered];
    (0..rng.below(30))
        .map(|j| StatusUpdate {
            id: known[rng.below(known.len())].clone(),
            status: statuses[rng.below(3)],
            recipient: (rng.below(2) == 0).then(|| rng.pick(&USERS).into()),
            at: batch as i64 * 10 + j as i64,
        })
        .collect()
}

/// Runs `batches` generated batches on `s` and records every answer, positions included:
/// they are gapless and handed out in batch order, so every backend must give the same ones.
pub(crate) fn transcript(s: &mut impl MessageStore, seed: u64, batches: usize) -> Vec<String> {
    let mut rng = Rng(seed | 1);
    let mut known: Vec<String> = vec!["missing".into()];
    let mut out = Vec::new();
    for batch in 0..batches {
        let ins = inserts(&mut rng, batch);
        known.extend(ins.iter().map(|m| m.id.clone()));
        let ups = updates(&mut rng, batch, &known);
        let (ins_res, ups_res) = s.commit(&ins, &ups).unwrap();
        out.push(format!("batch {batch}: {ins_res:?} {ups_res:?}"));
    }
    out.extend(reads(s, &known, batches as i64 * 10));
    out
}

/// Every read of the trait, at a few cursors and thresholds.
fn reads(s: &mut impl MessageStore, known: &[String], end: i64) -> Vec<String> {
    let mut out = Vec::new();
    for user in USERS {
        let page = s.history(user, 0, 1000).unwrap();
        let stream: Vec<_> = (page.messages.iter())
            .map(|m| (m.seq, m.cseq, &m.id, m.status))
            .collect();
        out.push(format!("stream {user}: {stream:?}"));
        let all = s.pending(user, 0, 1000).unwrap();
        let view: Vec<_> = all
            .iter()
            .map(|m| (m.seq, &m.id, m.status, m.created_at))
            .collect();
        out.push(format!("pending {user}: {view:?}"));
        if let Some(mid) = all.get(all.len() / 2) {
            let rest: Vec<_> = s.pending(user, mid.seq, 3).unwrap();
            let rest: Vec<_> = rest.into_iter().map(|m| m.id).collect();
            out.push(format!("pending {user} after {}: {rest:?}", mid.id));
        }
    }
    for t in [0, end / 3, end / 2, end] {
        let now = super::super::StuckAfter { none: 0, sent: 0 };
        let stuck: Vec<_> = s.claim_stuck(t, now, 1000).unwrap();
        let mut stuck: Vec<_> = stuck.into_iter().map(|m| (m.id, m.status)).collect();
        stuck.sort(); // Claims of the same instant come in no defined order.
        out.push(format!("stuck {t}: {stuck:?}"));
    }
    for id in known {
        out.push(format!("status {id}: {:?}", s.status_of(id).unwrap()));
    }
    out
}
