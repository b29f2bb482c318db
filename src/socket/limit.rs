//! The per-connection frame rate limit (`--max-frames-per-sec`): a token bucket refilled at
//! the rate and holding at most one second's worth, so a client may burst up to the rate.

/// One connection's bucket: 16 bytes in the connection's task.
pub struct FrameLimit {
    rate: f32,
    tokens: f32,
    /// When the bucket was last refilled, wall-clock µs (a clock step back refills nothing).
    at_us: i64,
}

impl FrameLimit {
    /// `None` for a rate of 0: no limit.
    pub fn new(rate: u32, now_us: i64) -> Option<FrameLimit> {
        (rate > 0).then_some(FrameLimit {
            rate: rate as f32,
            tokens: rate as f32,
            at_us: now_us,
        })
    }

    /// Whether one more frame may be processed now.
    pub fn take(&mut self, now_us: i64) -> bool {
        let elapsed = (now_us - self.at_us).max(0) as f32 / 1e6;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at_us = now_us;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::FrameLimit;

    #[test]
    fn a_burst_up_to_the_rate_then_the_rate_itself() {
        assert!(FrameLimit::new(0, 0).is_none());
        let mut l = FrameLimit::new(4, 0).unwrap();
        let burst = (0..10).filter(|_| l.take(0)).count();
        assert_eq!(burst, 4, "the bucket starts full");
        assert!(!l.take(100_000), "0.4 of a frame refilled after 100 ms");
        assert!(l.take(250_000), "one frame after 250 ms at 4/s");
        assert!(!l.take(250_000));
        // Idle for a minute: no more than one second's worth is saved up.
        let saved = (0..10).filter(|_| l.take(60_250_000)).count();
        assert_eq!(saved, 4);
        // A clock that steps back refills nothing and breaks nothing.
        assert!(!l.take(1_000));
    }
}
