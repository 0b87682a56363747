//! When to try again. Pure: the attempt count, the times and the random jitter are passed in.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::DeliverySettings;

/// What happens after a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(OffsetDateTime),
    /// The delivery's lifetime is over.
    Expired,
}

/// The delay before retry number `failures` (1 after the first failed attempt): the initial
/// delay doubled per failure, capped, then varied by up to ± `jitter` × itself. `sample` is a
/// random number in [-1, 1].
pub fn delay(s: &DeliverySettings, failures: u32, sample: f64) -> Duration {
    let base = s.retry_initial.as_secs_f64()
        * 2f64.powi(
            i32::try_from(failures.saturating_sub(1))
                .unwrap_or(i32::MAX)
                .min(62),
        );
    let capped = base.min(s.retry_max.as_secs_f64());
    let varied = capped * (1.0 + s.retry_jitter * sample.clamp(-1.0, 1.0));
    Duration::from_secs_f64(varied.max(0.0))
}

/// After `failures` temporary failures of a delivery accepted at `accepted`, at time `now`.
pub fn after_failure(
    s: &DeliverySettings,
    failures: u32,
    accepted: OffsetDateTime,
    now: OffsetDateTime,
    sample: f64,
) -> Next {
    let end = accepted + s.lifetime;
    let at = now + delay(s, failures, sample);
    if now >= end || at > end {
        Next::Expired
    } else {
        Next::RetryAt(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn settings() -> DeliverySettings {
        DeliverySettings {
            concurrency: 1,
            per_recipient: 1,
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            retry_jitter: 0.2,
            lifetime: Duration::from_secs(5 * 86_400),
            attempt_timeout: Duration::from_secs(60),
            attempt_min_rate_kib: 1024,
            payload_grace: Duration::from_secs(0),
        }
    }

    #[test]
    fn an_attempt_gets_time_for_its_payload_at_the_minimum_rate() {
        let s = settings();
        assert_eq!(s.attempt_deadline(0), Duration::from_secs(60));
        assert_eq!(s.attempt_deadline(1), Duration::from_secs(61));
        assert_eq!(s.attempt_deadline(2 << 30), Duration::from_secs(60 + 2048));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_jitter_stays_within_bounds() {
        let s = settings();
        let secs = |n, sample| delay(&s, n, sample).as_secs_f64();
        assert_eq!(secs(1, 0.0), 30.0);
        assert_eq!(secs(2, 0.0), 60.0);
        assert_eq!(secs(5, 0.0), 480.0);
        assert_eq!(secs(8, 0.0), 3600.0, "capped");
        assert_eq!(secs(1000, 0.0), 3600.0, "no overflow after many failures");
        assert_eq!(secs(1, 1.0), 36.0);
        assert_eq!(secs(1, -1.0), 24.0);
        assert_eq!(secs(1, 7.0), 36.0, "samples are clamped");
    }

    #[test]
    fn a_delivery_expires_when_its_next_try_would_fall_after_its_lifetime() {
        let s = settings();
        let accepted = datetime!(2026-11-22 00:00 UTC);
        assert_eq!(
            after_failure(&s, 1, accepted, accepted, 0.0),
            Next::RetryAt(datetime!(2026-11-22 00:00:30 UTC))
        );
        let late = datetime!(2026-11-26 23:59:50 UTC);
        assert_eq!(
            after_failure(&s, 1, accepted, late, 0.0),
            Next::Expired,
            "30 s would pass the 5-day lifetime"
        );
        assert_eq!(
            after_failure(&s, 1, accepted, datetime!(2026-11-27 00:00 UTC), -1.0),
            Next::Expired
        );
        assert!(matches!(
            after_failure(&s, 1, accepted, datetime!(2026-11-26 23:59:00 UTC), 0.0),
            Next::RetryAt(_)
        ));
    }
}
