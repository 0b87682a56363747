//! The bank holidays a request for information's working days skip: a TOML file of
//! `[[holiday]]` entries (`config/calendars/england-and-wales.toml` is built in), read once and
//! checked, every error with its line, into a [`Calendar`].

use serde::Deserialize;
use time::Date;
use time::macros::format_description;

use super::source::{Doc, Errors};
use crate::domain::calendar::Calendar;

/// The built-in calendar: England and Wales, 2025 to 2028.
pub const ENGLAND_AND_WALES: &str = include_str!("../../config/calendars/england-and-wales.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: String,
    name: String,
}

/// Reads a calendar file's text (`origin` names it in errors).
pub fn parse(origin: &str, text: &str, errors: &mut Errors) -> Option<Calendar> {
    let before = errors.0.len();
    let doc = Doc::parse(origin, text, errors)?;
    doc.reject_unknown_top_level(&["name", "source", "holiday"], errors);
    let name = match doc.root.get_ref().get("name") {
        Some(v) => doc.deserialize::<String>(v, "name", errors),
        None => {
            errors.push(doc.error_at(None, Some("name".into()), "the calendar has no `name`"));
            None
        }
    };
    if let Some(v) = doc.root.get_ref().get("source") {
        let _ = doc.deserialize::<String>(v, "source", errors);
    }
    let mut holidays = Vec::new();
    for (i, entry) in doc.entries("holiday", errors).iter().enumerate() {
        let key = format!("holiday[{i}]");
        let Some(raw) = doc.deserialize::<RawHoliday>(entry, &key, errors) else {
            continue;
        };
        match Date::parse(raw.date.trim(), format_description!("[year]-[month]-[day]")) {
            Ok(d) => holidays.push((d, raw.name.trim().to_owned())),
            Err(_) => errors.push(doc.error_at(
                doc.entry_field(entry, "date"),
                Some(format!("{key}.date")),
                format!("`{}` is not a date: write it YYYY-MM-DD", raw.date.trim()),
            )),
        }
    }
    if errors.0.len() > before {
        return None;
    }
    match Calendar::new(name?, holidays) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(doc.error_at(None, Some("holiday".into()), e.to_string()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_built_in_calendar_reads_and_covers_2025_to_2028() {
        let mut errors = Errors::default();
        let cal = parse("england-and-wales.toml", ENGLAND_AND_WALES, &mut errors)
            .unwrap_or_else(|| panic!("{:?}", errors.0));
        assert_eq!(cal.name, "England and Wales");
        assert_eq!(cal.covered_until(), Some(date!(2028 - 12 - 31)));
        assert_eq!(
            cal.holiday(date!(2026 - 12 - 28)),
            Some("Boxing Day (substitute day)")
        );
        assert_eq!(
            cal.holiday(date!(2028 - 01 - 03)),
            Some("New Year's Day (substitute day)")
        );
        assert!(
            cal.holiday(date!(2026 - 12 - 26)).is_none(),
            "a Saturday is not listed"
        );
        // Eight a year.
        for year in 2025..=2028 {
            let n = (1..=366)
                .filter_map(|d| Date::from_ordinal_date(year, d).ok())
                .filter(|d| cal.holiday(*d).is_some())
                .count();
            assert_eq!(n, 8, "{year}");
        }
    }

    #[test]
    fn a_bad_calendar_is_reported_with_its_line() {
        let text = "name = \"x\"\n[[holiday]]\ndate = \"2026-13-01\"\nname = \"y\"\n[[holiday]]\ndate = \"2026-01-01\"\nwhen = 1\n";
        let mut errors = Errors::default();
        assert!(parse("cal.toml", text, &mut errors).is_none());
        let lines: Vec<Option<usize>> = errors.0.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(3), Some(7)], "{:?}", errors.0);
        assert!(errors.0[0].message.contains("YYYY-MM-DD"));
    }
}
