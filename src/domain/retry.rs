//! The persisted retry schedule, a pure function of the attempt number.
//!
//! A failed attempt stores `next_attempt_at = now + delay_after(attempt)`; nothing about the
//! schedule lives in memory, so it survives restarts and any node may make the next attempt.
//! (In-process retries, such as reconnecting to the database, use `backon` instead.)

use std::time::Duration;

/// Standard Webhooks / Svix default: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_DELAYS_SECS: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

/// `±20 %` by default: spreads out retries of a burst that failed together.
pub const DEFAULT_JITTER: f64 = 0.2;

/// `Retry-After` is honoured within these bounds, so a receiver can neither make Herald
/// hammer it (0 s) nor park a delivery for a month.
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(6 * 3600);

/// The longest schedule accepted (attempts = delays + 1).
pub const MAX_RETRIES: usize = 50;
/// The longest single delay accepted: one week.
pub const MAX_DELAY_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Delay before retry 1, 2, …; the first attempt is immediate.
    delays: Vec<Duration>,
    /// Fraction in `[0, 1)`: each delay is scaled by a factor in `1 ± jitter`.
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::from_secs(&DEFAULT_DELAYS_SECS, DEFAULT_JITTER)
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>, jitter: f64) -> Self {
        Self {
            delays,
            jitter: jitter.clamp(0.0, 0.99),
        }
    }

    pub fn from_secs(secs: &[u64], jitter: f64) -> Self {
        Self::new(
            secs.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter,
        )
    }

    /// An exponential schedule: `base * factor^n`, capped at `max_delay`.
    pub fn exponential(
        base: Duration,
        factor: f64,
        max_delay: Duration,
        max_attempts: u32,
        jitter: f64,
    ) -> Self {
        let delays = (0..max_attempts.saturating_sub(1))
            .map(|n| base.mul_f64(factor.powi(n as i32)).min(max_delay))
            .collect();
        Self::new(delays, jitter)
    }

    /// Parses `"5,300,1800"` (seconds), the `HERALD_RETRY_SCHEDULE` format.
    pub fn parse_secs_list(s: &str, jitter: f64) -> Result<Self, String> {
        let secs = s
            .split(',')
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u64>()
                    .map_err(|_| format!("`{p}` is not a number of seconds"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        validate_delays(&secs)?;
        Ok(Self::from_secs(&secs, jitter))
    }

    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 0.99);
        self
    }

    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The first attempt plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The delay before the next attempt after attempt number `attempt` (1-based) failed, or
    /// `None` when that was the last one. `unit` is a uniform sample in `[-1, 1]` supplied by
    /// the caller (so this stays a pure function): `-1` shortens by the full jitter, `1`
    /// lengthens by it.
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Option<Duration> {
        let base = *self.delays.get((attempt as usize).checked_sub(1)?)?;
        let factor = 1.0 + self.jitter * unit.clamp(-1.0, 1.0);
        Some(base.mul_f64(factor))
    }
}

/// Checks a list of delays in seconds (from config or a destination's options).
pub fn validate_delays(secs: &[u64]) -> Result<(), String> {
    if secs.len() > MAX_RETRIES {
        return Err(format!("at most {MAX_RETRIES} retries are allowed"));
    }
    if let Some(s) = secs.iter().find(|s| **s > MAX_DELAY_SECS) {
        return Err(format!("a delay of {s} s is longer than one week"));
    }
    Ok(())
}

/// The delay to wait after a 429 or 503 that carried `Retry-After`, clamped to a sane range.
pub fn clamp_retry_after(requested: Duration) -> Duration {
    requested.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX)
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date (relative to `now_ms`).
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = at.timestamp_millis() - now_ms;
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// What an attempt's response means for its delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Succeeded,
    /// Try again after this long.
    Retry(Duration),
    /// Attempts exhausted: the delivery is dead-lettered.
    Exhausted,
    /// 410 Gone: the receiver asked never to be called again; the destination is disabled.
    Gone,
}

/// Decides the next step after attempt number `attempt` got `status` (None: no response).
/// `unit` is the jitter sample in `[-1, 1]`, `retry_after` the parsed header if any.
pub fn decide(
    schedule: &RetrySchedule,
    attempt: u32,
    status: Option<u16>,
    retry_after: Option<Duration>,
    unit: f64,
) -> Verdict {
    match status {
        Some(s) if (200..300).contains(&s) => return Verdict::Succeeded,
        Some(410) => return Verdict::Gone,
        _ => {}
    }
    match schedule.delay_after(attempt, unit) {
        None => Verdict::Exhausted,
        Some(scheduled) => match (status, retry_after) {
            (Some(429 | 503), Some(ra)) => Verdict::Retry(clamp_retry_after(ra)),
            _ => Verdict::Retry(scheduled),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_2xx_succeeds_and_410_is_gone_whatever_the_attempt() {
        let s = RetrySchedule::default();
        assert_eq!(decide(&s, 1, Some(204), None, 0.0), Verdict::Succeeded);
        assert_eq!(decide(&s, 99, Some(200), None, 0.0), Verdict::Succeeded);
        assert_eq!(decide(&s, 1, Some(410), None, 0.0), Verdict::Gone);
    }

    #[test]
    fn failures_follow_the_schedule_until_it_is_exhausted() {
        let s = RetrySchedule::from_secs(&[5, 60], 0.0);
        assert_eq!(
            decide(&s, 1, Some(500), None, 0.0),
            Verdict::Retry(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&s, 2, None, None, 0.0),
            Verdict::Retry(Duration::from_secs(60))
        );
        assert_eq!(decide(&s, 3, Some(500), None, 0.0), Verdict::Exhausted);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let s = RetrySchedule::from_secs(&[5], 0.0);
        let ra = Some(Duration::from_secs(120));
        assert_eq!(
            decide(&s, 1, Some(429), ra, 0.0),
            Verdict::Retry(Duration::from_secs(120))
        );
        assert_eq!(
            decide(&s, 1, Some(503), ra, 0.0),
            Verdict::Retry(Duration::from_secs(120))
        );
        assert_eq!(
            decide(&s, 1, Some(500), ra, 0.0),
            Verdict::Retry(Duration::from_secs(5))
        );
        assert_eq!(decide(&s, 2, Some(429), ra, 0.0), Verdict::Exhausted);
    }

    #[test]
    fn the_default_schedule_makes_eight_attempts() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 8);
        assert_eq!(s.delay_after(1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(s.delay_after(2, 0.0), Some(Duration::from_secs(300)));
        assert_eq!(s.delay_after(7, 0.0), Some(Duration::from_secs(36000)));
        assert_eq!(s.delay_after(8, 0.0), None);
        assert_eq!(s.delay_after(0, 0.0), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = RetrySchedule::default();
        assert_eq!(s.delay_after(2, -1.0), Some(Duration::from_secs(240)));
        assert_eq!(s.delay_after(2, 1.0), Some(Duration::from_secs(360)));
        // Out-of-range samples are clamped rather than trusted.
        assert_eq!(s.delay_after(2, 7.0), Some(Duration::from_secs(360)));
    }

    #[test]
    fn an_exponential_schedule_grows_and_is_capped() {
        let s = RetrySchedule::exponential(
            Duration::from_secs(1),
            2.0,
            Duration::from_secs(10),
            6,
            0.0,
        );
        let secs: Vec<u64> = s.delays().iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10]);
        assert_eq!(s.max_attempts(), 6);
    }

    #[test]
    fn a_schedule_list_is_parsed_and_validated() {
        let s = RetrySchedule::parse_secs_list("1, 2,3", 0.0).unwrap();
        assert_eq!(s.max_attempts(), 4);
        assert!(RetrySchedule::parse_secs_list("1,x", 0.0).is_err());
        assert!(RetrySchedule::parse_secs_list("99999999", 0.0).is_err());
        assert_eq!(
            RetrySchedule::parse_secs_list("", 0.0)
                .unwrap()
                .max_attempts(),
            1
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates_and_is_clamped() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(clamp_retry_after(Duration::ZERO), RETRY_AFTER_MIN);
        assert_eq!(
            clamp_retry_after(Duration::from_secs(86400 * 30)),
            RETRY_AFTER_MAX
        );
    }
}
