//! The per-connection frame rate limit (`--max-frames-per-sec`): a token bucket refilled at
//! the rate and holding at most one second's worth, so a client may burst up to the rate.
//!
//! A refused frame costs a token too, so the bucket goes into debt: a client that honours
//! `rate_limited` and pauses is served again, while one that keeps sending regardless sinks
//! to a whole second's worth of debt and is closed (4029). The debt is the same `f32`, so the
//! bucket stays 8 bytes.

/// One connection's bucket. 8 bytes, because it lives in every connection's task for the
/// connection's life: 16 bytes pushed the task into a larger allocation class and cost
/// ~250 B per idle connection (perf/RESULTS.md §10e).
pub struct FrameLimit {
    tokens: f32,
    /// When the bucket was last refilled, in ms of the wall clock modulo 2³² (differences
    /// wrap correctly; a clock step back refills nothing).
    at_ms: u32,
}

impl FrameLimit {
    /// A full bucket for `rate` frames per second.
    pub fn new(rate: u32, now_us: i64) -> FrameLimit {
        FrameLimit {
            tokens: rate as f32,
            at_ms: ms(now_us),
        }
    }

    /// What to do with one more frame now at `rate` (0: no limit).
    pub fn take(&mut self, rate: u32, now_us: i64) -> Take {
        if rate == 0 {
            return Take::Process;
        }
        let now = ms(now_us);
        let elapsed = now.wrapping_sub(self.at_ms);
        // A clock step back shows as a huge wrapped difference: refill nothing then.
        let elapsed = if elapsed > u32::MAX / 2 { 0 } else { elapsed };
        let rate = rate as f32;
        self.tokens = (self.tokens + elapsed as f32 / 1000.0 * rate).min(rate);
        self.at_ms = now;
        let ok = self.tokens >= 1.0;
        self.tokens -= 1.0;
        if ok {
            Take::Process
        } else if self.tokens > -rate {
            Take::Refuse
        } else {
            Take::Close
        }
    }
}

/// See [`FrameLimit::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Process,
    /// Answer `rate_limited`, process nothing.
    Refuse,
    /// A second's worth of frames refused without a pause: close the connection.
    Close,
}

fn ms(now_us: i64) -> u32 {
    (now_us / 1000) as u32 // Truncation is the modulo.
}

#[cfg(test)]
mod tests {
    use super::{FrameLimit, Take};

    fn ok(t: Take) -> bool {
        t == Take::Process
    }

    #[test]
    fn a_burst_up_to_the_rate_then_the_rate_itself() {
        let mut off = FrameLimit::new(0, 0);
        assert!((0..100).all(|_| ok(off.take(0, 0))), "0 is no limit");
        let mut l = FrameLimit::new(4, 0);
        assert!((0..4).all(|_| ok(l.take(4, 0))), "the bucket starts full");
        assert_eq!(l.take(4, 0), Take::Refuse);
        // The refused frame cost a token: 250 ms (one frame at 4/s) only pays it back.
        assert_eq!(l.take(4, 250_000), Take::Refuse);
        assert_eq!(
            l.take(4, 750_000),
            Take::Process,
            "a client that pauses is served"
        );
        // Idle for a minute: no more than one second's worth is saved up.
        let saved = (0..10).filter(|_| ok(l.take(4, 60_750_000))).count();
        assert_eq!(saved, 4);
        assert_eq!(std::mem::size_of::<FrameLimit>(), 8);
    }

    #[test]
    fn a_client_that_keeps_sending_while_refused_is_closed() {
        let mut l = FrameLimit::new(4, 0);
        let verdicts: Vec<Take> = (0..8).map(|_| l.take(4, 0)).collect();
        assert_eq!(&verdicts[..4], [Take::Process; 4]);
        assert_eq!(&verdicts[4..7], [Take::Refuse; 3]);
        assert_eq!(verdicts[7], Take::Close, "a second's worth of debt");
        // A clock that steps back refills nothing and breaks nothing.
        assert_eq!(FrameLimit::new(1, 5_000_000).take(1, 1_000), Take::Process);
    }

    #[test]
    fn the_millisecond_clock_wraps_without_a_burst() {
        let wrap_us = (u32::MAX as i64 + 1) * 1000;
        let mut l = FrameLimit::new(2, wrap_us - 1_000);
        assert!(ok(l.take(2, wrap_us - 1_000)) && ok(l.take(2, wrap_us - 1_000)));
        assert_eq!(l.take(2, wrap_us), Take::Refuse);
        assert!(
            ok(l.take(2, wrap_us + 1_000_000)),
            "a second across the wrap refills two frames, one of them the refused one's cost"
        );
    }
}
