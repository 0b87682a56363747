//! Timestamps as the store keeps them: UTC, RFC 3339, always six fractional digits, so that
//! they sort as text (the delivery queue orders and compares them in SQL).

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const STAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `2026-11-22T05:15:06.430754Z`.
pub fn stamp(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(STAMP)
        .unwrap_or_default()
}

pub fn parse(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, STAMP)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stamps_round_trip_and_sort_as_text() {
        let a = datetime!(2026-11-22 05:15:06 UTC);
        let b = datetime!(2026-11-22 05:15:06.1 UTC);
        let c = datetime!(2026-11-22 06:15:06.5 +01:00);
        assert_eq!(stamp(a), "2026-11-22T05:15:06.000000Z");
        assert!(stamp(a) < stamp(b) && stamp(b) < stamp(c));
        assert_eq!(stamp(c), "2026-11-22T05:15:06.500000Z");
        assert_eq!(parse(&stamp(b)), Some(b));
        assert_eq!(parse("yesterday"), None);
    }
}
