//! The per-connection frame rate limit (`--max-frames-per-sec`): a token bucket refilled at
//! the rate and holding at most one second's worth, so a client may burst up to the rate.

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

    /// Whether one more frame may be processed now at `rate` (0: no limit).
    pub fn take(&mut self, rate: u32, now_us: i64) -> bool {
        if rate == 0 {
            return true;
        }
        let now = ms(now_us);
        let elapsed = now.wrapping_sub(self.at_ms);
        // A clock step back shows as a huge wrapped difference: refill nothing then.
        let elapsed = if elapsed > u32::MAX / 2 { 0 } else { elapsed };
        let rate = rate as f32;
        self.tokens = (self.tokens + elapsed as f32 / 1000.0 * rate).min(rate);
        self.at_ms = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

fn ms(now_us: i64) -> u32 {
    (now_us / 1000) as u32 // Truncation is the modulo.
}

#[cfg(test)]
mod tests {
    use super::FrameLimit;

    #[test]
    fn a_burst_up_to_the_rate_then_the_rate_itself() {
        let mut off = FrameLimit::new(0, 0);
        assert!((0..100).all(|_| off.take(0, 0)), "0 is no limit");
        let mut l = FrameLimit::new(4, 0);
        let burst = (0..10).filter(|_| l.take(4, 0)).count();
        assert_eq!(burst, 4, "the bucket starts full");
        assert!(!l.take(4, 100_000), "0.4 of a frame refilled after 100 ms");
        assert!(l.take(4, 250_000), "one frame after 250 ms at 4/s");
        assert!(!l.take(4, 250_000));
        // Idle for a minute: no more than one second's worth is saved up.
        let saved = (0..10).filter(|_| l.take(4, 60_250_000)).count();
        assert_eq!(saved, 4);
        // A clock that steps back refills nothing and breaks nothing.
        assert!(!l.take(4, 1_000));
        assert_eq!(std::mem::size_of::<FrameLimit>(), 8);
    }

    #[test]
    fn the_millisecond_clock_wraps_without_a_burst() {
        let wrap_us = (u32::MAX as i64 + 1) * 1000;
        let mut l = FrameLimit::new(2, wrap_us - 1_000);
        assert!(l.take(2, wrap_us - 1_000) && l.take(2, wrap_us - 1_000));
        assert!(!l.take(2, wrap_us));
        assert!(
            l.take(2, wrap_us + 499_000),
            "500 ms across the wrap refill one"
        );
    }
}
