//! Protective marking: the label a payload carries, parsed from either vocabulary in use in UK
//! safeguarding (the 2014 Government Security Classifications and the legacy GPMS) onto one ordered
//! scale that policy decisions compare against ceilings.
//!
//! The scale below SECRET is configuration (`marking.toml`), and so is the mapping of every legacy
//! label: RESTRICTED and CONFIDENTIAL have no single agreed modern equivalent, so the code refuses to
//! guess. SECRET and TOP SECRET are built in and always sit above every configured level: a gateway
//! on the internet is for the OFFICIAL tier, so policy always refuses them.

use std::fmt;

/// A position on the scale. `Level(0)` is the lowest configured level; derived ordering puts every
/// configured level below `Secret`, and `Secret` below `TopSecret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rank {
    Level(u8),
    Secret,
    TopSecret,
}

impl Rank {
    /// True for SECRET and TOP SECRET, which this gateway never carries.
    pub fn is_above_official_tier(self) -> bool {
        !matches!(self, Rank::Level(_))
    }
}

/// The legacy GPMS labels below SECRET. Each must be mapped in `marking.toml`.
pub const LEGACY_LABELS: [&str; 4] = [
    "NOT PROTECTIVELY MARKED",
    "PROTECT",
    "RESTRICTED",
    "CONFIDENTIAL",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vocabulary {
    /// Government Security Classifications (2014 onwards).
    Gsc,
    /// The legacy Government Protective Marking Scheme.
    Gpms,
}

/// Which part of the scheme's configuration a [`SchemeError`] concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeAt {
    Levels,
    Level(usize),
    LegacyTable,
    Legacy(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("the scale must name at least one level")]
    NoLevels,
    #[error("level `{0}` appears more than once")]
    DuplicateLevel(String),
    #[error(
        "`{0}` cannot be a configured level: SECRET and TOP SECRET are built in and always refused"
    )]
    ReservedLevel(String),
    #[error("`{0}` is a legacy GPMS label; map it under [legacy] instead of listing it as a level")]
    LegacyAsLevel(String),
    #[error("at most 200 levels may be configured")]
    TooManyLevels,
    #[error("`{0}` is not a legacy GPMS label this gateway knows (expected one of {labels})", labels = LEGACY_LABELS.join(", "))]
    UnknownLegacyLabel(String),
    #[error(
        "legacy label `{0}` maps to `{1}`, which is neither a configured level nor SECRET / TOP SECRET"
    )]
    UnknownTarget(String, String),
    #[error(
        "legacy label `{0}` is not mapped; the mapping of legacy labels is configuration, not a guess"
    )]
    UnmappedLegacy(&'static str),
    #[error("`{0}` is empty or has no letters")]
    EmptyName(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkingError {
    #[error("the marking is empty")]
    Empty,
    #[error("`{0}` is not a protective marking this gateway recognises")]
    Unrecognised(String),
    #[error("`{descriptor}` is not a recognised handling descriptor (after `{label}`)")]
    UnknownDescriptor { label: String, descriptor: String },
}

#[derive(Debug, Clone)]
struct Label {
    tokens: Vec<String>,
    rank: Rank,
    vocabulary: Vocabulary,
}

/// The configured scale, descriptors and legacy mapping. Built once from `marking.toml`.
#[derive(Debug, Clone)]
pub struct MarkingScheme {
    levels: Vec<String>,
    descriptors: Vec<Vec<String>>,
    labels: Vec<Label>,
}

/// A parsed marking: the text exactly as given (kept for the record) and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marking {
    pub given: String,
    pub rank: Rank,
    pub descriptor: Option<String>,
    pub vocabulary: Vocabulary,
}

/// Marking text split into comparable words: case and the separators people actually type
/// (`OFFICIAL-SENSITIVE`, `OFFICIAL SENSITIVE`, `PROTECT - PERSONAL`, `[PERSONAL]`) do not matter.
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || "-_:[](),/".contains(c))
        .filter(|t| !t.is_empty())
        .map(|t| t.to_uppercase())
        .collect()
}

impl MarkingScheme {
    /// Builds a scheme from the ordered levels (lowest first), the accepted handling descriptors
    /// and the legacy mapping (label, target level name). Returns every problem found, each with
    /// the entry it concerns so that the config layer can point at its line.
    pub fn new(
        levels: &[String],
        descriptors: &[String],
        legacy: &[(String, String)],
    ) -> Result<Self, Vec<(SchemeAt, SchemeError)>> {
        let mut errors = Vec::new();
        if levels.is_empty() {
            errors.push((SchemeAt::Levels, SchemeError::NoLevels));
        }
        if levels.len() > 200 {
            errors.push((SchemeAt::Levels, SchemeError::TooManyLevels));
        }
        let mut labels = Vec::new();
        let mut canonical = Vec::new();
        for (i, name) in levels.iter().enumerate() {
            let toks = tokens(name);
            if toks.is_empty() {
                errors.push((SchemeAt::Level(i), SchemeError::EmptyName(name.clone())));
                continue;
            }
            if toks == ["SECRET"] || toks == ["TOP", "SECRET"] {
                errors.push((SchemeAt::Level(i), SchemeError::ReservedLevel(name.clone())));
                continue;
            }
            if LEGACY_LABELS.iter().any(|l| tokens(l) == toks) {
                errors.push((SchemeAt::Level(i), SchemeError::LegacyAsLevel(name.clone())));
                continue;
            }
            if labels.iter().any(|l: &Label| l.tokens == toks) {
                errors.push((
                    SchemeAt::Level(i),
                    SchemeError::DuplicateLevel(name.clone()),
                ));
                continue;
            }
            let rank = Rank::Level(u8::try_from(canonical.len()).unwrap_or(u8::MAX));
            labels.push(Label {
                tokens: toks,
                rank,
                vocabulary: Vocabulary::Gsc,
            });
            canonical.push(name.trim().to_uppercase());
        }
        for (name, rank) in [("SECRET", Rank::Secret), ("TOP SECRET", Rank::TopSecret)] {
            labels.push(Label {
                tokens: tokens(name),
                rank,
                vocabulary: Vocabulary::Gsc,
            });
        }
        let mut scheme = MarkingScheme {
            levels: canonical,
            descriptors: descriptors.iter().map(|d| tokens(d)).collect(),
            labels,
        };
        for (i, (label, target)) in legacy.iter().enumerate() {
            if let Err(e) = scheme.map_legacy(label, target) {
                errors.push((SchemeAt::Legacy(i), e));
            }
        }
        for missing in scheme.unmapped_legacy() {
            errors.push((SchemeAt::LegacyTable, SchemeError::UnmappedLegacy(missing)));
        }
        if errors.is_empty() {
            Ok(scheme)
        } else {
            Err(errors)
        }
    }

    fn map_legacy(&mut self, label: &str, target: &str) -> Result<(), SchemeError> {
        let toks = tokens(label);
        if !LEGACY_LABELS.iter().any(|l| tokens(l) == toks) {
            return Err(SchemeError::UnknownLegacyLabel(label.to_owned()));
        }
        let rank = self
            .rank_of(target)
            .ok_or_else(|| SchemeError::UnknownTarget(label.to_owned(), target.to_owned()))?;
        self.labels.retain(|l| l.tokens != toks);
        self.labels.push(Label {
            tokens: toks,
            rank,
            vocabulary: Vocabulary::Gpms,
        });
        Ok(())
    }

    fn unmapped_legacy(&self) -> Vec<&'static str> {
        LEGACY_LABELS
            .iter()
            .filter(|l| !self.labels.iter().any(|x| x.tokens == tokens(l)))
            .copied()
            .collect()
    }

    /// The rank of a level name as written in configuration (a ceiling or a maximum). Accepts the
    /// configured levels and SECRET / TOP SECRET, not legacy labels: ceilings are set in one
    /// vocabulary so that a reader of the config sees one scale.
    pub fn rank_of(&self, name: &str) -> Option<Rank> {
        let toks = tokens(name);
        self.labels
            .iter()
            .find(|l| l.tokens == toks && l.vocabulary == Vocabulary::Gsc)
            .map(|l| l.rank)
    }

    /// The canonical name of a rank, for messages and records.
    pub fn name(&self, rank: Rank) -> &str {
        match rank {
            Rank::Level(i) => self
                .levels
                .get(usize::from(i))
                .map_or("UNKNOWN", String::as_str),
            Rank::Secret => "SECRET",
            Rank::TopSecret => "TOP SECRET",
        }
    }

    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// Parses a marking as a practitioner or system wrote it. The longest known label that
    /// starts the text wins (so `OFFICIAL-SENSITIVE` is not read as `OFFICIAL` plus a descriptor);
    /// anything after it must be a configured handling descriptor.
    pub fn parse(&self, given: &str) -> Result<Marking, MarkingError> {
        let toks = tokens(given);
        if toks.is_empty() {
            return Err(MarkingError::Empty);
        }
        let label = self
            .labels
            .iter()
            .filter(|l| toks.starts_with(&l.tokens))
            .max_by_key(|l| l.tokens.len())
            .ok_or_else(|| MarkingError::Unrecognised(given.trim().to_owned()))?;
        let rest = &toks[label.tokens.len()..];
        let descriptor = if rest.is_empty() {
            None
        } else if self.descriptors.iter().any(|d| d == rest) {
            Some(rest.join(" "))
        } else {
            return Err(MarkingError::UnknownDescriptor {
                label: label.tokens.join(" "),
                descriptor: rest.join(" "),
            });
        };
        Ok(Marking {
            given: given.trim().to_owned(),
            rank: label.rank,
            descriptor,
            vocabulary: label.vocabulary,
        })
    }
}

impl Marking {
    /// The marking on the gateway's scale, e.g. `OFFICIAL-SENSITIVE PERSONAL`.
    pub fn normalised(&self, scheme: &MarkingScheme) -> String {
        match &self.descriptor {
            Some(d) => format!("{} {d}", scheme.name(self.rank)),
            None => scheme.name(self.rank).to_owned(),
        }
    }
}

impl fmt::Display for Marking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    /// The scheme the demo configuration uses.
    pub(crate) fn demo_scheme() -> MarkingScheme {
        let legacy = [
            ("NOT PROTECTIVELY MARKED", "OFFICIAL"),
            ("PROTECT", "OFFICIAL"),
            ("RESTRICTED", "OFFICIAL-SENSITIVE"),
            ("CONFIDENTIAL", "SECRET"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        match MarkingScheme::new(
            &s(&["OFFICIAL", "OFFICIAL-SENSITIVE"]),
            &s(&["PERSONAL", "COMMERCIAL", "LOCSEN"]),
            &legacy,
        ) {
            Ok(m) => m,
            Err(e) => panic!("demo scheme invalid: {e:?}"),
        }
    }

    #[test]
    fn both_vocabularies_land_on_one_scale() {
        let m = demo_scheme();
        let cases = [
            ("OFFICIAL", Rank::Level(0), None, Vocabulary::Gsc),
            ("official-sensitive", Rank::Level(1), None, Vocabulary::Gsc),
            (
                "OFFICIAL SENSITIVE  PERSONAL",
                Rank::Level(1),
                Some("PERSONAL"),
                Vocabulary::Gsc,
            ),
            (
                "OFFICIAL-SENSITIVE [PERSONAL]",
                Rank::Level(1),
                Some("PERSONAL"),
                Vocabulary::Gsc,
            ),
            (
                "NOT PROTECTIVELY MARKED",
                Rank::Level(0),
                None,
                Vocabulary::Gpms,
            ),
            (
                "PROTECT - PERSONAL",
                Rank::Level(0),
                Some("PERSONAL"),
                Vocabulary::Gpms,
            ),
            ("Restricted", Rank::Level(1), None, Vocabulary::Gpms),
            ("CONFIDENTIAL", Rank::Secret, None, Vocabulary::Gpms),
            ("SECRET", Rank::Secret, None, Vocabulary::Gsc),
            ("TOP SECRET", Rank::TopSecret, None, Vocabulary::Gsc),
        ];
        for (given, rank, desc, vocab) in cases {
            let parsed = m.parse(given).unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(parsed.rank, rank, "{given}");
            assert_eq!(parsed.descriptor.as_deref(), desc, "{given}");
            assert_eq!(parsed.vocabulary, vocab, "{given}");
            assert_eq!(parsed.given, given.trim());
        }
    }

    #[test]
    fn unknown_markings_and_descriptors_are_refused_not_guessed() {
        let m = demo_scheme();
        assert_eq!(m.parse("  "), Err(MarkingError::Empty));
        assert!(matches!(
            m.parse("UNCLASSIFIED"),
            Err(MarkingError::Unrecognised(_))
        ));
        assert!(matches!(
            m.parse("OFFICIAL-SENSITIVE BANANA"),
            Err(MarkingError::UnknownDescriptor { .. })
        ));
    }

    #[test]
    fn the_scale_orders_levels_below_secret() {
        let m = demo_scheme();
        assert!(Rank::Level(0) < Rank::Level(1));
        assert!(Rank::Level(199) < Rank::Secret);
        assert!(Rank::Secret < Rank::TopSecret);
        assert_eq!(m.rank_of("official sensitive"), Some(Rank::Level(1)));
        assert_eq!(
            m.rank_of("RESTRICTED"),
            None,
            "ceilings use the modern scale"
        );
        assert_eq!(
            m.parse("OFFICIAL-SENSITIVE personal")
                .map(|x| x.normalised(&m))
                .ok()
                .as_deref(),
            Some("OFFICIAL-SENSITIVE PERSONAL")
        );
    }

    #[test]
    fn a_scheme_must_map_every_legacy_label_and_not_reuse_reserved_names() {
        let Err(errors) = MarkingScheme::new(
            &s(&["OFFICIAL", "SECRET", "official", "PROTECT"]),
            &[],
            &[
                ("RESTRICTED".into(), "OFFICIAL".into()),
                ("PROTECTED".into(), "OFFICIAL".into()),
                ("PROTECT".into(), "NOWHERE".into()),
            ],
        ) else {
            panic!("scheme should be invalid");
        };
        let msgs: Vec<_> = errors.iter().map(|(_, e)| e.clone()).collect();
        assert!(msgs.contains(&SchemeError::ReservedLevel("SECRET".into())));
        assert!(msgs.contains(&SchemeError::DuplicateLevel("official".into())));
        assert!(msgs.contains(&SchemeError::LegacyAsLevel("PROTECT".into())));
        assert!(msgs.contains(&SchemeError::UnknownLegacyLabel("PROTECTED".into())));
        assert!(msgs.contains(&SchemeError::UnknownTarget(
            "PROTECT".into(),
            "NOWHERE".into()
        )));
        assert!(msgs.contains(&SchemeError::UnmappedLegacy("CONFIDENTIAL")));
        assert!(msgs.contains(&SchemeError::UnmappedLegacy("NOT PROTECTIVELY MARKED")));
    }
}
