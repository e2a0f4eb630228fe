//! Retry timing shared by the engines: exponential backoff with seedable jitter. The seed comes
//! from the host, like time, so the core needs no OS randomness and tests are reproducible.

/// splitmix64: tiny, seedable, good enough for jitter and tags.
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The wait before retry number `attempt` (1-based): `base_ms · 2^(attempt-1)`, capped at
    /// `max_ms`, then scaled by a random factor in [50 %, 100 %] so retries do not stampede.
    pub fn backoff_ms(&mut self, attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
        let exponent = attempt.saturating_sub(1).min(32);
        let step = base_ms.saturating_mul(1u64 << exponent).min(max_ms);
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (step as f64 * (0.5 + 0.5 * unit)).round() as u64
    }
}
