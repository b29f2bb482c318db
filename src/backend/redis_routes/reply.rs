//! Reading the route thread's Redis replies.

use crate::backend::Location;

/// The places of a `ZRANGEBYSCORE … WITHSCORES` reply with their lease expiries: pairs under
/// RESP3, a flat member, score, member, score list under RESP2.
pub fn parse_members(v: redis::Value) -> Vec<(Location, i64)> {
    let pairs: Vec<(String, f64)> = match &v {
        redis::Value::Array(items) if items.iter().all(|i| matches!(i, redis::Value::Array(_))) => {
            redis::from_redis_value(&v).unwrap_or_default()
        }
        _ => {
            let flat: Vec<String> = redis::from_redis_value(&v).unwrap_or_default();
            (flat.chunks_exact(2))
                .filter_map(|c| Some((c[0].clone(), c[1].parse().ok()?)))
                .collect()
        }
    };
    (pairs.into_iter())
        .filter_map(|(m, expiry)| {
            let (pod, shard) = m.rsplit_once('/')?;
            let at = Location {
                pod: pod.into(),
                shard: shard.parse().ok()?,
            };
            Some((at, expiry as i64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn at(pod: &str, shard: u16) -> Location {
        Location {
            pod: pod.into(),
            shard,
        }
    }

    #[test]
    fn places_and_expiries_are_read_from_resp3_pairs_and_resp2_lists() {
        // RESP3 (the route cache's connection): one [member, score] array per place.
        let pair = |m: &str, e: f64| Value::Array(vec![bulk(m), Value::Double(e)]);
        let resp3 = Value::Array(vec![pair("pod-a/0", 1_000.0), pair("pod-b/1", 2_000.0)]);
        let want = vec![(at("pod-a", 0), 1_000), (at("pod-b", 1), 2_000)];
        assert_eq!(parse_members(resp3), want);
        // RESP2 (--route-cache-max-age-ms 0): member, score, member, score.
        let flat = ["pod-a/0", "1000", "pod-b/1", "2000"].map(bulk).to_vec();
        assert_eq!(parse_members(Value::Array(flat)), want);
        assert_eq!(parse_members(Value::Array(vec![])), vec![]);
    }

    #[test]
    fn members_that_name_no_place_are_skipped() {
        let flat = [
            "no-shard",
            "1000",
            "pod-a/x",
            "1000",
            "pod/with/slash/3",
            "5",
        ]
        .map(bulk);
        assert_eq!(
            parse_members(Value::Array(flat.to_vec())),
            vec![(at("pod/with/slash", 3), 5)]
        );
        assert_eq!(parse_members(Value::Nil), vec![]);
    }
}
