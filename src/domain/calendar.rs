//! Working days: the clock an information request is answered against. The protocols say a
//! data holding agency answers a request in writing within fifteen working days; a working day
//! is Monday to Friday and not a bank holiday of the deployment's calendar (a file the
//! configuration reads; England and Wales ships with the product).
//!
//! Pure: the calendar and the day of receipt are passed in, and every rule here is tested as a
//! table below.

use std::collections::BTreeMap;

use time::{Date, Duration, Weekday};

/// The bank holidays of one jurisdiction, for the years it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// What the file calls itself, e.g. `England and Wales`.
    pub name: String,
    holidays: BTreeMap<Date, String>,
    /// The years the file lists holidays for (each listed year is taken as complete).
    first_year: i32,
    last_year: i32,
}

/// Why a list of holidays is not a calendar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("the calendar lists no holidays")]
    Empty,
    #[error("{0} is listed twice")]
    Repeated(Date),
    #[error(
        "{date} is a {weekday}: a bank holiday falls on a weekday (a substitute day is listed instead)"
    )]
    Weekend { date: Date, weekday: Weekday },
    #[error("no holiday is listed for {0}, between years that have them: is a year missing?")]
    Gap(i32),
}

/// When a request is due, and whether the calendar covered every day counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub date: Date,
    /// False when the count ran past the calendar's last year: beyond it only weekends are
    /// skipped, so the date may be too early by a bank holiday the file does not list yet.
    pub covered: bool,
}

impl Calendar {
    /// A calendar from its holidays. Every year from the first listed to the last must have at
    /// least one (a missing year would silently count its holidays as working days).
    pub fn new(
        name: impl Into<String>,
        holidays: impl IntoIterator<Item = (Date, String)>,
    ) -> Result<Self, CalendarError> {
        let mut map = BTreeMap::new();
        for (date, what) in holidays {
            if is_weekend(date) {
                return Err(CalendarError::Weekend {
                    date,
                    weekday: date.weekday(),
                });
            }
            if map.insert(date, what).is_some() {
                return Err(CalendarError::Repeated(date));
            }
        }
        let (Some(first), Some(last)) = (map.keys().next(), map.keys().next_back()) else {
            return Err(CalendarError::Empty);
        };
        let (first_year, last_year) = (first.year(), last.year());
        for year in first_year..=last_year {
            if !map.keys().any(|d| d.year() == year) {
                return Err(CalendarError::Gap(year));
            }
        }
        Ok(Calendar {
            name: name.into(),
            holidays: map,
            first_year,
            last_year,
        })
    }

    /// The last day the calendar knows the holidays of.
    pub fn covered_until(&self) -> Option<Date> {
        Date::from_calendar_date(self.last_year, time::Month::December, 31).ok()
    }

    fn covers(&self, d: Date) -> bool {
        (self.first_year..=self.last_year).contains(&d.year())
    }

    /// The holiday on `d`, if it is one.
    pub fn holiday(&self, d: Date) -> Option<&str> {
        self.holidays.get(&d).map(String::as_str)
    }

    pub fn is_working_day(&self, d: Date) -> bool {
        !is_weekend(d) && !self.holidays.contains_key(&d)
    }

    /// The `n`th working day after `received`. The day of receipt never counts, whatever day
    /// it is: a request received on a Friday afternoon or on a bank holiday starts its count on
    /// the next working day, and that day is day one. `received` is the day where the calendar
    /// applies (in England and Wales, the local day, not UTC's: a request at 23:30 UTC in
    /// summer arrived on the next day); the caller converts.
    pub fn working_days_after(&self, received: Date, n: u32) -> Due {
        let mut day = received;
        let mut counted = 0;
        let mut covered = true;
        while counted < n {
            let Some(next) = day.next_day() else { break };
            day = next;
            covered &= self.covers(day) || is_weekend(day);
            if self.is_working_day(day) {
                counted += 1;
            }
        }
        Due { date: day, covered }
    }

    /// Working days from `from` (exclusive) to `to` (inclusive): how late an answer was, or how
    /// long a request has been open. Zero when `to` is not after `from`.
    pub fn working_days_between(&self, from: Date, to: Date) -> u32 {
        let mut n = 0;
        let mut day = from;
        while day < to {
            let Some(next) = day.next_day() else { break };
            day = next;
            if self.is_working_day(day) {
                n += 1;
            }
        }
        n
    }
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// The calendar's clock: the bank holiday calendars the product serves are all the United
/// Kingdom's, so a day is a day in `Europe/London` (GMT in winter, BST in summer). The zone's
/// rules come from the tz database compiled into the binary (data, not IO), so the day a
/// request arrived on does not depend on the host's zone files.
fn london() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Europe/London").unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The day in the United Kingdom at the instant `at`: the day a request was received on.
pub fn uk_day(at: time::OffsetDateTime) -> Date {
    let Ok(ts) = jiff::Timestamp::from_second(at.unix_timestamp()) else {
        return at.date();
    };
    let local = london().to_datetime(ts).date();
    Date::from_calendar_date(
        i32::from(local.year()),
        time::Month::try_from(local.month() as u8).unwrap_or(time::Month::January),
        local.day() as u8,
    )
    .unwrap_or(at.date())
}

/// The last instant of the day `d` in the United Kingdom: a request due on `d` is overdue
/// after it.
pub fn uk_end_of_day(d: Date) -> time::OffsetDateTime {
    let fallback = d.with_hms(23, 59, 59).map(|t| t.assume_utc());
    let next = d.next_day().and_then(|n| {
        let civil = jiff::civil::date(
            i16::try_from(n.year()).ok()?,
            n.month() as i8,
            n.day() as i8,
        );
        let start = london()
            .to_timestamp(civil.to_datetime(jiff::civil::Time::midnight()))
            .ok()?;
        time::OffsetDateTime::from_unix_timestamp(start.as_second() - 1).ok()
    });
    next.or(fallback.ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// An urgent request's limit is in hours, counted on the clock (weekends and holidays
/// included): urgency does not wait for Monday.
pub fn hours_after(received: time::OffsetDateTime, hours: u32) -> time::OffsetDateTime {
    received + Duration::hours(i64::from(hours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn the_day_of_receipt_is_the_uk_day_not_utc_s() {
        for (at, day) in [
            // Winter: GMT is UTC.
            (datetime!(2026-01-15 23:30 UTC), date!(2026 - 01 - 15)),
            // Summer: 23:30 UTC is 00:30 BST the next day.
            (datetime!(2026-07-15 23:30 UTC), date!(2026 - 07 - 16)),
            (datetime!(2026-07-15 22:59:59 UTC), date!(2026 - 07 - 15)),
            // The clocks go forward at 01:00 UTC on 29 March 2026, back on 25 October.
            (datetime!(2026-03-28 23:30 UTC), date!(2026 - 03 - 28)),
            (datetime!(2026-03-29 23:30 UTC), date!(2026 - 03 - 30)),
            (datetime!(2026-10-24 23:30 UTC), date!(2026 - 10 - 25)),
            (datetime!(2026-10-25 23:30 UTC), date!(2026 - 10 - 25)),
            // A year end in winter.
            (datetime!(2026-12-31 23:59:59 UTC), date!(2026 - 12 - 31)),
        ] {
            assert_eq!(uk_day(at), day, "{at}");
        }
        // The end of a summer day is 22:59:59 UTC; of a winter day, 23:59:59.
        assert_eq!(
            uk_end_of_day(date!(2026 - 07 - 15)),
            datetime!(2026-07-15 22:59:59 UTC)
        );
        assert_eq!(
            uk_end_of_day(date!(2026 - 01 - 15)),
            datetime!(2026-01-15 23:59:59 UTC)
        );
        // The day the clocks go back is 25 hours long.
        assert_eq!(
            uk_end_of_day(date!(2026 - 10 - 25)),
            datetime!(2026-10-25 23:59:59 UTC)
        );
    }

    /// England and Wales, 2026 and 2027 (as the shipped file lists them).
    fn england() -> Calendar {
        Calendar::new(
            "England and Wales",
            [
                (date!(2026 - 01 - 01), "New Year's Day"),
                (date!(2026 - 04 - 03), "Good Friday"),
                (date!(2026 - 04 - 06), "Easter Monday"),
                (date!(2026 - 05 - 04), "Early May bank holiday"),
                (date!(2026 - 05 - 25), "Spring bank holiday"),
                (date!(2026 - 08 - 31), "Summer bank holiday"),
                (date!(2026 - 12 - 25), "Christmas Day"),
                (date!(2026 - 12 - 28), "Boxing Day (substitute day)"),
                (date!(2027 - 01 - 01), "New Year's Day"),
                (date!(2027 - 03 - 26), "Good Friday"),
                (date!(2027 - 03 - 29), "Easter Monday"),
            ]
            .map(|(d, n)| (d, n.to_owned())),
        )
        .expect("calendar")
    }

    #[test]
    fn fifteen_working_days_as_a_table() {
        let cal = england();
        // (received, due, why)
        let table = [
            (
                date!(2026 - 06 - 01),
                date!(2026 - 06 - 22),
                "a plain Monday: three weeks on",
            ),
            (
                date!(2026 - 06 - 05),
                date!(2026 - 06 - 26),
                "a Friday: the count starts on Monday",
            ),
            (
                date!(2026 - 06 - 06),
                date!(2026 - 06 - 26),
                "a Saturday counts from Monday too",
            ),
            (
                date!(2026 - 06 - 07),
                date!(2026 - 06 - 26),
                "so does a Sunday",
            ),
            (
                date!(2026 - 05 - 20),
                date!(2026 - 06 - 11),
                "the Spring bank holiday is skipped",
            ),
            (
                date!(2026 - 05 - 25),
                date!(2026 - 06 - 15),
                "received on a bank holiday",
            ),
            (
                date!(2026 - 03 - 27),
                date!(2026 - 04 - 21),
                "Good Friday and Easter Monday skipped",
            ),
            (
                date!(2026 - 12 - 14),
                date!(2027 - 01 - 07),
                "over Christmas and the year's end",
            ),
            (
                date!(2026 - 12 - 24),
                date!(2027 - 01 - 19),
                "Christmas Eve: three holidays in the count",
            ),
        ];
        for (received, due, why) in table {
            let got = cal.working_days_after(received, 15);
            assert_eq!(got.date, due, "{why}: received {received}");
            assert!(got.covered, "{why}");
            assert!(cal.is_working_day(got.date), "{why}: due on a working day");
            assert_eq!(cal.working_days_between(received, got.date), 15, "{why}");
        }
    }

    #[test]
    fn counting_past_the_calendar_says_so() {
        let cal = england();
        let due = cal.working_days_after(date!(2027 - 12 - 20), 15);
        assert!(!due.covered, "2028 is not in this calendar");
        // Only weekends skipped beyond it: 20 Dec 2027 + 15 weekdays.
        assert_eq!(due.date, date!(2028 - 01 - 10));
        assert!(cal.working_days_after(date!(2026 - 06 - 01), 15).covered);
    }

    #[test]
    fn lateness_is_counted_in_working_days() {
        let cal = england();
        assert_eq!(
            cal.working_days_between(date!(2026 - 06 - 22), date!(2026 - 06 - 22)),
            0
        );
        assert_eq!(
            cal.working_days_between(date!(2026 - 06 - 22), date!(2026 - 06 - 19)),
            0
        );
        assert_eq!(
            cal.working_days_between(date!(2026 - 06 - 19), date!(2026 - 06 - 22)),
            1
        );
        assert_eq!(
            cal.working_days_between(date!(2026 - 12 - 24), date!(2026 - 12 - 29)),
            1
        );
    }

    #[test]
    fn a_calendar_refuses_what_cannot_be_a_list_of_bank_holidays() {
        let name = |d: Date| (d, "x".to_owned());
        assert_eq!(Calendar::new("x", Vec::new()), Err(CalendarError::Empty));
        assert_eq!(
            Calendar::new(
                "x",
                [name(date!(2026 - 01 - 01)), name(date!(2026 - 01 - 01))]
            ),
            Err(CalendarError::Repeated(date!(2026 - 01 - 01)))
        );
        assert!(matches!(
            Calendar::new("x", [name(date!(2026 - 12 - 26))]),
            Err(CalendarError::Weekend { .. })
        ));
        assert_eq!(
            Calendar::new(
                "x",
                [name(date!(2025 - 01 - 01)), name(date!(2027 - 01 - 01))]
            ),
            Err(CalendarError::Gap(2026))
        );
    }

    #[test]
    fn an_urgent_limit_runs_on_the_clock() {
        assert_eq!(
            hours_after(datetime!(2026-06-05 16:00 UTC), 24),
            datetime!(2026-06-06 16:00 UTC)
        );
    }
}
