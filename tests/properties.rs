//! Property tests for everything a network peer can send the gateway: the envelope of a
//! transfer, the protective marking in it, subject references, the clear metadata of an inbound
//! delivery, and the bodies of a decision not to share and of a rationale.
//!
//! For each: arbitrary input never panics; input generated to be valid is accepted and survives
//! a round trip through its wire form; and (for the envelope, a decision and a rationale) a
//! valid body with one field replaced by a value of the wrong type is refused with one error
//! naming exactly that field. The fuzz targets in `fuzz/` exercise the same parsers longer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use postern_gateway::config::registry::{RegistrySources, load};
use postern_gateway::config::{Paths, Source, embedded_demo};
use postern_gateway::domain::decision::{
    DecisionContext, DecisionError, Decline, Practitioner, Rationale, parse_decision,
    parse_rationale,
};
use postern_gateway::domain::envelope::{
    Envelope, EnvelopeError, FieldError, FieldProblem, ParseContext, RecipientEnvelope, Retention,
    limits, parse_json,
};
use postern_gateway::domain::ids::{OrgId, TransferId};
use postern_gateway::domain::lawful::{DataCategory, LawfulBasis, SpecialCategoryCondition};
use postern_gateway::domain::marking::{MarkingError, MarkingScheme, Rank};
use postern_gateway::domain::registry::Registry;
use postern_gateway::domain::subject::{SubjectKey, SubjectRef};
use postern_gateway::inbox::InboundMeta;
use postern_gateway::runtime::devkit;
use proptest::prelude::*;
use serde_json::{Value, json};
use time::{Date, Duration};

// ---------------------------------------------------------------------------------------------
// The demo configuration the parsers run against.

const SENDER: &str = "northshire-cc";
const TODAY: Date = time::macros::date!(2026 - 11 - 22);

/// `marking.toml` as the configuration loader reads it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarking {
    levels: Vec<String>,
    #[serde(default)]
    descriptors: Vec<String>,
    #[serde(default)]
    legacy: BTreeMap<String, String>,
}

static SCHEME: LazyLock<MarkingScheme> = LazyLock::new(|| {
    let raw: RawMarking = toml::from_str(include_str!("../config/demo/marking.toml"))
        .expect("config/demo/marking.toml parses");
    let legacy: Vec<(String, String)> = raw.legacy.into_iter().collect();
    MarkingScheme::new(&raw.levels, &raw.descriptors, &legacy)
        .unwrap_or_else(|e| panic!("the demo marking scheme is invalid: {e:?}"))
});

static SENDER_ID: LazyLock<OrgId> = LazyLock::new(|| SENDER.parse().expect("an org id"));

/// The whole demo registry, loaded as `postern demo` loads it (its development certificates and
/// keys generated in a scratch directory first; once loaded, the registry needs none of them).
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let orgs = devkit::dev_orgs(embedded_demo::ORGANISATIONS).expect("the demo organisations");
    devkit::ensure(dir.path(), &orgs).expect("the demo's development material");
    let src = |name: &str, text: &str| {
        Some(Source {
            name: format!("config/demo/{name}"),
            text: text.to_owned(),
        })
    };
    let sources = RegistrySources {
        marking: src("marking.toml", embedded_demo::MARKING),
        purposes: src("purposes.toml", embedded_demo::PURPOSES),
        organisations: src("organisations.toml", embedded_demo::ORGANISATIONS),
        agreements: src("agreements.toml", embedded_demo::AGREEMENTS),
        peers: src("peers.toml", embedded_demo::PEERS),
        people: src("people.toml", embedded_demo::PEOPLE),
    };
    let paths = Paths {
        state_dir: dir.path().to_path_buf(),
        config_dir: None,
        credentials_dir: None,
        offline: false,
    };
    match load(&sources, &paths, None) {
        Ok(loaded) => loaded.registry,
        Err(e) => panic!("the demo registry does not load: {e:?}"),
    }
});

fn cx() -> ParseContext<'static> {
    ParseContext {
        sender: &SENDER_ID,
        marking: &SCHEME,
        today: TODAY,
    }
}

fn decision_cx() -> DecisionContext<'static> {
    DecisionContext {
        decider: &SENDER_ID,
        registry: &REGISTRY,
    }
}

/// 256 cases per property (a few seconds in a debug build); `PROPTEST_CASES` asks for more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        // A failure prints its minimal input; no regressions file is written next to this one.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// Free text as a practitioner types it: never blank, possibly with surrounding spaces (which
/// the parsers trim).
fn text(max: usize) -> impl Strategy<Value = String> {
    (
        " {0,2}",
        proptest::string::string_regex(&format!("[A-Za-z0-9][A-Za-z0-9 ,.'()/-]{{0,{max}}}"))
            .expect("a regex"),
    )
        .prop_map(|(pad, t)| format!("{pad}{t}"))
}

/// An id as the registry spells them (organisations, purposes).
fn slug() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,24}"
}

fn one_of<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

/// A valid NHS number: nine digits and the check digit they give (never 10).
fn nhs_number() -> impl Strategy<Value = String> {
    proptest::collection::vec(0u32..10, 9).prop_filter_map("check digit 10", |d| {
        let sum: u32 = d.iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
        let check = match 11 - (sum % 11) {
            11 => 0,
            10 => return None,
            c => c,
        };
        Some(
            d.iter()
                .chain(std::iter::once(&check))
                .map(|x| char::from_digit(*x, 10).unwrap_or('0'))
                .collect(),
        )
    })
}

/// A valid subject reference as typed, and its normalised form.
fn subject_ref() -> impl Strategy<Value = (String, String)> {
    let nhs = (
        nhs_number(),
        one_of(&["nhs", "NHS", "Nhs", " nhs "]),
        0usize..3,
    )
        .prop_map(|(n, scheme, style)| {
            let typed = match style {
                0 => n.clone(),
                1 => format!("{} {} {}", &n[..3], &n[3..6], &n[6..]),
                _ => format!("{}-{}-{}", &n[..3], &n[3..6], &n[6..]),
            };
            (format!("{scheme}:{typed}"), format!("nhs:{n}"))
        });
    let other = ("[A-Za-z0-9_-]{1,32}", "[A-Za-z0-9/._:#-]{1,64}", " {0,2}")
        .prop_filter("not nhs", |(s, _, _)| !s.eq_ignore_ascii_case("nhs"))
        .prop_map(|(scheme, value, pad)| {
            (
                format!("{pad}{scheme}{pad}:{pad}{value}{pad}"),
                format!("{}:{value}", scheme.to_lowercase()),
            )
        });
    prop_oneof![nhs, other]
}

/// How each label of the demo scale may be written (words), and the level it sits at.
const LABELS: &[(&[&str], &str)] = &[
    (&["OFFICIAL"], "OFFICIAL"),
    (&["OFFICIAL", "SENSITIVE"], "OFFICIAL-SENSITIVE"),
    (&["NOT", "PROTECTIVELY", "MARKED"], "OFFICIAL"),
    (&["PROTECT"], "OFFICIAL"),
    (&["RESTRICTED"], "OFFICIAL-SENSITIVE"),
    (&["CONFIDENTIAL"], "SECRET"),
    (&["SECRET"], "SECRET"),
    (&["TOP", "SECRET"], "TOP SECRET"),
];
const DESCRIPTORS: &[&str] = &["PERSONAL", "COMMERCIAL", "LOCSEN"];
/// What people type between words.
const SEPARATORS: &[&str] = &[" ", "-", "_", "  ", " - ", ": ", "/"];

/// A valid marking as a practitioner might write it, and its normalised form.
fn marking() -> impl Strategy<Value = (String, String)> {
    (
        0..LABELS.len(),
        one_of(SEPARATORS),
        proptest::option::of((one_of(DESCRIPTORS), 0usize..4)),
        proptest::collection::vec(any::<bool>(), 64),
        " {0,2}",
    )
        .prop_map(|(label, sep, descriptor, lower, pad)| {
            let (words, level) = LABELS[label];
            let mut typed = words.join(sep);
            let mut normalised = level.to_owned();
            if let Some((d, style)) = descriptor {
                typed.push_str(&match style {
                    0 => format!(" {d}"),
                    1 => format!(" [{d}]"),
                    2 => format!(" ({d})"),
                    _ => format!("-{d}"),
                });
                normalised = format!("{normalised} {d}");
            }
            let cased: String = typed
                .chars()
                .zip(lower.iter().cycle())
                .map(|(c, l)| if *l { c.to_ascii_lowercase() } else { c })
                .collect();
            (format!("{pad}{cased}{pad}"), normalised)
        })
}

/// A JSON object of the members that are present (a member left out is not `null`).
fn object(members: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect(),
    )
}

fn practitioner() -> impl Strategy<Value = Value> {
    (text(40), text(40), text(60))
        .prop_map(|(name, role, contact)| json!({"name": name, "role": role, "contact": contact}))
}

fn request() -> impl Strategy<Value = Value> {
    (text(30), text(100))
        .prop_map(|(reference, requested)| json!({"reference": reference, "requested": requested}))
}

fn uuid_text() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string())
}

prop_compose! {
    /// A valid envelope from the demo sender, in its wire form.
    fn envelope()(
        recipients in proptest::collection::btree_set(slug(), 1..5)
            .prop_filter("never the sender", |r| !r.contains(SENDER)),
        purpose in slug(),
        justification in proptest::option::of(text(200)),
        lawful_basis in one_of(LawfulBasis::ALL),
        special in proptest::option::of(one_of(SpecialCategoryCondition::ALL)),
        categories in proptest::collection::vec(one_of(DataCategory::ALL), 1..4),
        (marking, _) in marking(),
        originator in proptest::option::of(slug()),
        permission in proptest::option::of(text(30)),
        practitioner in practitioner(),
        consent in (0usize..3, text(100)),
        informed in proptest::option::of(text(100)),
        urgency in proptest::option::of(text(100)),
        request in proptest::option::of(request()),
        summary in text(200),
        retention in prop_oneof![
            (1..=limits::MAX_RETENTION_DAYS).prop_map(|d| json!({"days": d})),
            (1..=i64::from(limits::MAX_RETENTION_DAYS))
                .prop_map(|d| json!({"until": (TODAY + Duration::days(d)).to_string()})),
        ],
        refs in proptest::collection::vec(subject_ref(), 1..5),
        file_name in proptest::option::of("[A-Za-z0-9][A-Za-z0-9 ._-]{0,30}"),
        content_type in proptest::option::of("(application|text|image)/[a-z0-9.+-]{1,20}"),
        correction_of in proptest::option::of(uuid_text()),
    ) -> Value {
        // Only an urgent share may leave its justification for later.
        let justification = match urgency {
            Some(_) => justification,
            None => justification.or(Some("Risk of harm.".into())),
        };
        object(vec![
            ("recipients", Some(json!(recipients))),
            ("purpose", Some(json!(purpose))),
            ("justification", justification.map(Value::from)),
            ("lawful_basis", Some(json!(lawful_basis.as_str()))),
            ("special_category_condition", special.map(|c| json!(c.as_str()))),
            (
                "data_categories",
                Some(json!(categories.iter().map(|c| c.as_str()).collect::<Vec<_>>())),
            ),
            ("marking", Some(json!(marking))),
            ("originator", originator.map(Value::from)),
            ("originator_permission_ref", permission.map(Value::from)),
            ("practitioner", Some(practitioner)),
            ("consent", Some(match consent {
                (0, _) => json!({"status": "given"}),
                (1, r) => json!({"status": "refused_overridden", "reason": r}),
                (_, r) => json!({"status": "not_sought", "reason": r}),
            })),
            ("subject_informed", Some(match informed {
                None => json!({"informed": true}),
                Some(r) => json!({"informed": false, "reason": r}),
            })),
            ("urgency", Some(match urgency {
                None => json!({"level": "routine"}),
                Some(r) => json!({"level": "urgent", "reason": r}),
            })),
            ("request", request),
            ("disclosed_summary", Some(json!(summary))),
            ("retention", Some(retention)),
            (
                "subject_refs",
                Some(json!(refs.into_iter().map(|(typed, _)| typed).collect::<Vec<_>>())),
            ),
            ("file_name", file_name.map(Value::from)),
            ("content_type", content_type.map(Value::from)),
            ("correction_of", correction_of.map(Value::from)),
        ])
    }
}

prop_compose! {
    /// A valid decision not to share from the demo sender, against the demo registry, in its
    /// wire form.
    fn decision()(
        recipients in proptest::sample::subsequence(other_orgs(), 1..=other_orgs().len()),
        purpose in proptest::option::of(proptest::sample::select(demo_purposes())),
        reasons in text(300),
        practitioner in practitioner(),
        request in proptest::option::of(request()),
        refs in proptest::option::of(proptest::collection::vec(subject_ref(), 0..4)),
        categories in proptest::option::of(
            proptest::collection::vec(one_of(DataCategory::ALL), 0..4),
        ),
    ) -> Value {
        object(vec![
            ("recipients", Some(json!(recipients))),
            ("purpose", purpose.map(Value::from)),
            ("reasons", Some(json!(reasons))),
            ("practitioner", Some(practitioner)),
            ("request", request),
            (
                "subject_refs",
                refs.map(|r| json!(r.into_iter().map(|(typed, _)| typed).collect::<Vec<_>>())),
            ),
            (
                "data_categories",
                categories.map(|c| json!(c.iter().map(|c| c.as_str()).collect::<Vec<_>>())),
            ),
        ])
    }
}

fn other_orgs() -> Vec<String> {
    REGISTRY
        .organisations()
        .map(|o| o.id.to_string())
        .filter(|id| id != SENDER)
        .collect()
}

fn demo_purposes() -> Vec<String> {
    REGISTRY.purposes().map(|p| p.id.to_string()).collect()
}

fn rationale() -> impl Strategy<Value = Value> {
    (text(300), proptest::option::of(practitioner())).prop_map(|(justification, practitioner)| {
        object(vec![
            ("justification", Some(json!(justification))),
            ("practitioner", practitioner),
        ])
    })
}

fn inbound_meta() -> impl Strategy<Value = InboundMeta> {
    (
        any::<u128>(),
        slug(),
        slug(),
        any::<String>(),
        any::<String>(),
        any::<String>(),
        any::<String>(),
    )
        .prop_map(
            |(id, recipient, sender, sender_name, purpose, marking, retain_until)| InboundMeta {
                transfer_id: TransferId::from_uuid(uuid::Uuid::from_u128(id)),
                recipient: recipient.parse().expect("a slug"),
                sender: sender.parse().expect("a slug"),
                sender_name,
                purpose,
                marking,
                retain_until,
            },
        )
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object whose keys are mostly the ones `keys` names, with arbitrary values.
fn object_with(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        prop_oneof![4 => one_of(keys).prop_map(str::to_owned), 1 => any::<String>()],
        json_value(),
        0..keys.len() + 2,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

// ---------------------------------------------------------------------------------------------
// Round trips back to the wire forms.

fn practitioner_json(p: &Practitioner) -> Value {
    json!({"name": p.name, "role": p.role, "contact": p.contact})
}

/// The wire form of a parsed envelope.
fn envelope_json(e: &Envelope) -> Value {
    object(vec![
        (
            "recipients",
            Some(json!(
                e.recipients
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            )),
        ),
        ("purpose", Some(json!(e.purpose.to_string()))),
        ("justification", Some(json!(e.justification.expose()))),
        ("lawful_basis", Some(json!(e.lawful_basis.as_str()))),
        (
            "special_category_condition",
            e.special_category_condition.map(|c| json!(c.as_str())),
        ),
        (
            "data_categories",
            Some(json!(
                e.data_categories
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
            )),
        ),
        ("marking", Some(json!(e.marking.given))),
        ("originator", Some(json!(e.originator.to_string()))),
        (
            "originator_permission_ref",
            e.originator_permission_ref.clone().map(Value::from),
        ),
        ("practitioner", Some(practitioner_json(&e.practitioner))),
        (
            "consent",
            Some(object(vec![
                ("status", Some(json!(e.consent.status()))),
                ("reason", e.consent.reason().map(Value::from)),
            ])),
        ),
        (
            "subject_informed",
            Some(object(vec![
                ("informed", Some(json!(e.subject_informed.informed()))),
                ("reason", e.subject_informed.reason().map(Value::from)),
            ])),
        ),
        (
            "urgency",
            Some(object(vec![
                ("level", Some(json!(e.urgency.level()))),
                ("reason", e.urgency.reason().map(Value::from)),
            ])),
        ),
        (
            "request",
            e.request
                .as_ref()
                .map(|r| json!({"reference": r.reference, "requested": r.requested.as_ref().map(|q| q.expose())})),
        ),
        (
            "disclosed_summary",
            Some(json!(e.disclosed_summary.expose())),
        ),
        (
            "retention",
            Some(match e.retention {
                Retention::Days(n) => json!({"days": n}),
                Retention::Until(d) => json!({"until": d.to_string()}),
            }),
        ),
        (
            "subject_refs",
            Some(json!(
                e.subject_refs
                    .iter()
                    .map(SubjectRef::expose)
                    .collect::<Vec<_>>()
            )),
        ),
        ("file_name", e.file_name.clone().map(Value::from)),
        ("content_type", e.content_type.clone().map(Value::from)),
        (
            "correction_of",
            e.correction_of.map(|id| json!(id.to_string())),
        ),
    ])
}

/// The wire form of a parsed decision not to share.
fn decision_json(d: &Decline) -> Value {
    object(vec![
        (
            "recipients",
            Some(json!(
                d.recipients
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            )),
        ),
        ("purpose", d.purpose.as_ref().map(|p| json!(p.to_string()))),
        ("reasons", Some(json!(d.reasons.expose()))),
        ("practitioner", Some(practitioner_json(&d.practitioner))),
        (
            "request",
            d.request
                .as_ref()
                .map(|r| json!({"reference": r.reference, "requested": r.requested.as_ref().map(|q| q.expose())})),
        ),
        (
            "subject_refs",
            Some(json!(
                d.subject_refs
                    .iter()
                    .map(SubjectRef::expose)
                    .collect::<Vec<_>>()
            )),
        ),
        (
            "data_categories",
            Some(json!(
                d.data_categories
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
            )),
        ),
    ])
}

/// The wire form of a parsed rationale.
fn rationale_json(r: &Rationale) -> Value {
    object(vec![
        ("justification", Some(json!(r.justification.expose()))),
        (
            "practitioner",
            r.practitioner.as_ref().map(practitioner_json),
        ),
    ])
}

/// A text member of a JSON object, trimmed as the parsers trim it.
fn trimmed<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default().trim()
}

/// A list of text members of a JSON object.
fn texts(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn bytes_of<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialises")
}

/// The normalised references of a list as typed, first occurrence of each kept (the parsers
/// drop repeats of the same person).
fn normalised_refs(typed: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in typed {
        let n = SubjectRef::parse(t).expect("generated valid").expose();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Wrong types.

/// A value of a type the field does not have.
#[derive(Debug, Clone, Copy)]
enum Wrong {
    Number,
    Negative,
    Fraction,
    Huge,
    Bool,
    Text,
    Array,
    Object,
}

impl Wrong {
    /// The sentinel is an NHS number: a refusal must not echo what was sent.
    fn value(self) -> Value {
        match self {
            Wrong::Number => json!(9434765919u64),
            Wrong::Negative => json!(-1),
            Wrong::Fraction => json!(1.5),
            Wrong::Huge => json!(1u64 << 40),
            Wrong::Bool => json!(true),
            Wrong::Text => json!("WRONG 9434765919"),
            Wrong::Array => json!(["9434765919"]),
            Wrong::Object => json!({"value": "9434765919"}),
        }
    }
}

/// What kind of value a field holds, and so which values are of the wrong type for it. An
/// object is not offered an array: serde reads a struct from a JSON array too (positionally),
/// so an array there is not a type error (see the report of this suite).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    TextList,
    Object,
    Bool,
    Days,
}

impl Kind {
    fn wrong(self) -> &'static [Wrong] {
        use Wrong::*;
        match self {
            Kind::Text => &[Number, Negative, Fraction, Bool, Array, Object],
            Kind::TextList => &[Number, Bool, Text, Object],
            Kind::Object => &[Number, Bool, Text],
            Kind::Bool => &[Number, Text, Array, Object],
            Kind::Days => &[Negative, Fraction, Huge, Bool, Text, Array, Object],
        }
    }
}

/// Every field of the envelope, by the path an error names it with.
const ENVELOPE_FIELDS: &[(&str, Kind)] = &[
    ("recipients", Kind::TextList),
    ("recipients[0]", Kind::Text),
    ("purpose", Kind::Text),
    ("justification", Kind::Text),
    ("lawful_basis", Kind::Text),
    ("special_category_condition", Kind::Text),
    ("data_categories", Kind::TextList),
    ("data_categories[0]", Kind::Text),
    ("marking", Kind::Text),
    ("originator", Kind::Text),
    ("originator_permission_ref", Kind::Text),
    ("practitioner", Kind::Object),
    ("practitioner.name", Kind::Text),
    ("practitioner.role", Kind::Text),
    ("practitioner.contact", Kind::Text),
    ("consent", Kind::Object),
    ("consent.status", Kind::Text),
    ("consent.reason", Kind::Text),
    ("subject_informed", Kind::Object),
    ("subject_informed.informed", Kind::Bool),
    ("subject_informed.reason", Kind::Text),
    ("urgency", Kind::Object),
    ("urgency.level", Kind::Text),
    ("urgency.reason", Kind::Text),
    ("request", Kind::Object),
    ("request.reference", Kind::Text),
    ("request.requested", Kind::Text),
    ("disclosed_summary", Kind::Text),
    ("retention", Kind::Object),
    ("retention.until", Kind::Text),
    ("retention.days", Kind::Days),
    ("subject_refs", Kind::TextList),
    ("subject_refs[0]", Kind::Text),
    ("file_name", Kind::Text),
    ("content_type", Kind::Text),
    ("correction_of", Kind::Text),
];

const DECISION_FIELDS: &[(&str, Kind)] = &[
    ("recipients", Kind::TextList),
    ("recipients[0]", Kind::Text),
    ("purpose", Kind::Text),
    ("reasons", Kind::Text),
    ("practitioner", Kind::Object),
    ("practitioner.name", Kind::Text),
    ("practitioner.role", Kind::Text),
    ("practitioner.contact", Kind::Text),
    ("request", Kind::Object),
    ("request.reference", Kind::Text),
    ("request.requested", Kind::Text),
    ("subject_refs", Kind::TextList),
    ("subject_refs[0]", Kind::Text),
    ("data_categories", Kind::TextList),
    ("data_categories[0]", Kind::Text),
];

const RATIONALE_FIELDS: &[(&str, Kind)] = &[
    ("justification", Kind::Text),
    ("practitioner", Kind::Object),
    ("practitioner.name", Kind::Text),
    ("practitioner.role", Kind::Text),
    ("practitioner.contact", Kind::Text),
];

/// A field of `fields` and a value of the wrong type for it.
fn wrong_field(
    fields: &'static [(&'static str, Kind)],
) -> impl Strategy<Value = (&'static str, Wrong)> {
    (0..fields.len()).prop_flat_map(move |i| {
        let (path, kind) = fields[i];
        one_of(kind.wrong()).prop_map(move |w| (path, w))
    })
}

/// Sets the field at `path` (`a`, `a.b` or `a[0]`), creating the object or list it is in.
fn set_path(v: &mut Value, path: &str, value: Value) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let obj = v.as_object_mut().expect("an object");
    if let Some(name) = head.strip_suffix("[0]") {
        let list = obj.entry(name).or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let items = list.as_array_mut().expect("a list");
        if items.is_empty() {
            items.push(Value::Null);
        }
        items[0] = value;
        return;
    }
    match rest {
        None => {
            obj.insert(head.to_owned(), value);
        }
        Some(rest) => {
            let inner = obj.entry(head).or_insert_with(|| json!({}));
            if !inner.is_object() {
                *inner = json!({});
            }
            set_path(inner, rest, value);
        }
    }
}

/// The refusal must be exactly one error, of an invalid value, naming the field, without
/// echoing the value.
fn assert_names_field(errors: &[FieldError], path: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(errors.len(), 1, "{:?}", errors);
    prop_assert_eq!(errors[0].field.as_str(), path);
    prop_assert_eq!(errors[0].code, FieldProblem::InvalidValue);
    prop_assert!(
        !errors[0].message.contains("9434765919"),
        "the message echoes the value: {}",
        errors[0].message
    );
    prop_assert!(
        errors[0].message.contains(&format!("`{path}`")),
        "{}",
        errors[0].message
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Subject references.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn subject_refs_never_panic_and_accepted_ones_round_trip(s in any::<String>()) {
        if let Ok(r) = SubjectRef::parse(&s) {
            let again = SubjectRef::parse(&r.expose());
            prop_assert_eq!(again.as_ref(), Ok(&r));
        }
    }

    #[test]
    fn subject_refs_near_the_grammar_never_panic(s in "[ a-zA-Z0-9:_-]{0,12}:[ 0-9a-zA-Z\\t\\n-]{0,20}") {
        if let Ok(r) = SubjectRef::parse(&s) {
            let again = SubjectRef::parse(&r.expose());
            prop_assert_eq!(again.as_ref(), Ok(&r));
        }
    }

    #[test]
    fn valid_subject_refs_are_accepted_normalised_and_hash_alike((typed, normalised) in subject_ref()) {
        let key = SubjectKey::new(vec![7; 32]).expect("a key");
        let r = SubjectRef::parse(&typed);
        prop_assert!(r.is_ok(), "{typed:?} refused: {r:?}");
        let r = r.unwrap();
        prop_assert_eq!(r.expose(), normalised.clone());
        let again = SubjectRef::parse(&normalised).expect("the normalised form parses");
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again.hash(&key), r.hash(&key));
        prop_assert_eq!(r.hash(&key).as_str().len(), 64);
        // The Debug form never shows the value.
        let value = normalised.split_once(':').map(|(_, v)| v).unwrap_or_default();
        let debug = format!("{r:?}");
        prop_assert!(
            !debug.contains(&format!(":{value}")),
            "the Debug form shows the value"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Markings.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn markings_never_panic_and_accepted_ones_round_trip(s in any::<String>()) {
        if let Ok(m) = SCHEME.parse(&s) {
            prop_assert_eq!(m.given.as_str(), s.trim());
            let again = SCHEME.parse(&m.given);
            prop_assert_eq!(again.as_ref(), Ok(&m));
            let again = SCHEME.parse(&m.normalised(&SCHEME)).expect("the normalised form parses");
            prop_assert_eq!((again.rank, again.descriptor), (m.rank, m.descriptor));
        }
    }

    #[test]
    fn marking_words_in_any_order_never_panic(
        words in proptest::collection::vec(
            prop_oneof![
                one_of(&["OFFICIAL", "SENSITIVE", "SECRET", "TOP", "PROTECT", "NOT",
                         "PROTECTIVELY", "MARKED", "RESTRICTED", "CONFIDENTIAL", "PERSONAL",
                         "COMMERCIAL", "LOCSEN", "official", "x", ""]).prop_map(str::to_owned),
                "[A-Za-z]{1,8}",
            ],
            0..6,
        ),
        sep in one_of(SEPARATORS),
    ) {
        let s = words.join(sep);
        match SCHEME.parse(&s) {
            Ok(m) => {
                let again = SCHEME.parse(&m.normalised(&SCHEME)).expect("the normalised form parses");
                prop_assert_eq!(again.rank, m.rank);
            }
            Err(MarkingError::Empty) => prop_assert!(s.chars().all(|c| c.is_whitespace() || "-_:[](),/".contains(c))),
            Err(_) => {}
        }
    }

    #[test]
    fn valid_markings_are_accepted_onto_the_scale((typed, normalised) in marking()) {
        let m = SCHEME.parse(&typed);
        prop_assert!(m.is_ok(), "{typed:?} refused: {m:?}");
        let m = m.unwrap();
        prop_assert_eq!(m.given.as_str(), typed.trim());
        prop_assert_eq!(m.normalised(&SCHEME), normalised.clone());
        let again = SCHEME.parse(&normalised).expect("the normalised form parses");
        prop_assert_eq!((again.rank, &again.descriptor), (m.rank, &m.descriptor));
        prop_assert_eq!(
            m.rank.is_above_official_tier(),
            normalised.starts_with("SECRET") || normalised.starts_with("TOP SECRET")
        );
        if let Rank::Level(i) = m.rank {
            prop_assert!(usize::from(i) < SCHEME.levels().len());
        }
    }

    #[test]
    fn an_unknown_descriptor_is_refused_not_guessed(
        (typed, _) in marking(),
        word in "[A-Z]{3,10}",
    ) {
        prop_assume!(!DESCRIPTORS.contains(&word.as_str()));
        let given = format!("{} {word}", typed.trim());
        let refused = matches!(
            SCHEME.parse(&given),
            Err(MarkingError::UnknownDescriptor { .. } | MarkingError::Unrecognised(_))
        );
        // The word may happen to continue a label (`TOP` + `SECRET`); then it is not unknown.
        prop_assert!(refused || LABELS.iter().any(|(w, _)| w.contains(&word.as_str())), "{given:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Envelopes.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn envelope_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match parse_json(&bytes, &cx()) {
            Ok(_) | Err(EnvelopeError::Malformed(_)) => {}
            Err(EnvelopeError::Invalid(errors)) => prop_assert!(!errors.is_empty()),
        }
    }

    #[test]
    fn envelope_shaped_json_never_panics(v in object_with(&[
        "recipients", "purpose", "justification", "lawful_basis", "special_category_condition",
        "data_categories", "marking", "originator", "originator_permission_ref", "practitioner",
        "consent", "subject_informed", "urgency", "request", "disclosed_summary", "retention",
        "subject_refs", "file_name", "content_type", "correction_of",
    ])) {
        match parse_json(&bytes_of(&v), &cx()) {
            Ok(e) => {
                let again = parse_json(&bytes_of(&envelope_json(&e)), &cx());
                prop_assert_eq!(again.as_ref(), Ok(&e));
            }
            Err(EnvelopeError::Malformed(m)) => prop_assert!(false, "valid JSON is malformed: {}", m),
            Err(EnvelopeError::Invalid(errors)) => prop_assert!(!errors.is_empty()),
        }
    }

    #[test]
    fn valid_envelopes_are_accepted_and_round_trip(raw in envelope()) {
        let parsed = parse_json(&bytes_of(&raw), &cx());
        prop_assert!(parsed.is_ok(), "refused: {parsed:?}");
        let e = parsed.unwrap();

        // What was sent is what was understood.
        let recipients: Vec<String> = e.recipients.iter().map(ToString::to_string).collect();
        prop_assert_eq!(recipients, texts(&raw, "recipients"));
        prop_assert_eq!(e.purpose.as_str(), trimmed(&raw, "purpose"));
        prop_assert_eq!(e.lawful_basis.as_str(), trimmed(&raw, "lawful_basis"));
        let originator = match trimmed(&raw, "originator") {
            "" => SENDER,
            o => o,
        };
        prop_assert_eq!(e.originator.as_str(), originator);
        prop_assert_eq!(e.marking.given.as_str(), trimmed(&raw, "marking"));
        prop_assert_eq!(e.practitioner.name.as_str(), trimmed(&raw["practitioner"], "name"));
        prop_assert_eq!(e.disclosed_summary.expose(), trimmed(&raw, "disclosed_summary"));
        let categories: BTreeSet<String> =
            e.data_categories.iter().map(|c| c.as_str().to_owned()).collect();
        let sent: BTreeSet<String> = texts(&raw, "data_categories").into_iter().collect();
        prop_assert_eq!(categories, sent);
        let refs: Vec<String> = e.subject_refs.iter().map(SubjectRef::expose).collect();
        prop_assert_eq!(refs, normalised_refs(&texts(&raw, "subject_refs")));
        prop_assert!(e.retention.until(TODAY) > TODAY);

        // Written back in its wire form, it parses to the same envelope.
        let again = parse_json(&bytes_of(&envelope_json(&e)), &cx());
        prop_assert_eq!(again.as_ref(), Ok(&e));

        // What the recipient is sent survives its own serde round trip.
        let id = TransferId::from_uuid(uuid::Uuid::from_u128(7));
        let received = time::macros::datetime!(2026-11-22 10:00 UTC);
        let sealed = RecipientEnvelope::new(id, &SENDER_ID, &e, &SCHEME, received);
        let back: RecipientEnvelope = serde_json::from_slice(&bytes_of(&sealed)).expect("parses back");
        prop_assert_eq!(back, sealed);
    }

    #[test]
    fn a_field_of_the_wrong_type_is_refused_by_name(
        raw in envelope(),
        (path, wrong) in wrong_field(ENVELOPE_FIELDS),
    ) {
        let mut v = raw;
        set_path(&mut v, path, wrong.value());
        match parse_json(&bytes_of(&v), &cx()) {
            Err(EnvelopeError::Invalid(errors)) => assert_names_field(&errors, path)?,
            other => prop_assert!(false, "{path} = {wrong:?}: expected a refusal, got {other:?}"),
        }
    }
}

/// The envelope's objects must be objects: serde's derived readers also take a JSON array (the
/// members by position), so `"practitioner": ["Sam", "SW", "sam@x"]` was accepted as a
/// practitioner and `"retention": [null, 30]` as 30 days, neither of which the API documents;
/// and one element too many answered 400 `envelope_not_json` ("trailing characters") for a body
/// that is valid JSON. Each is 422 with the member named as of the wrong type.
#[test]
fn an_array_in_place_of_an_object_is_refused_as_a_wrong_type() {
    let base = json!({
        "recipients": ["northshire-police"],
        "purpose": "child-protection-s47",
        "justification": "Risk of harm.",
        "lawful_basis": "public_task",
        "data_categories": ["personal"],
        "marking": "OFFICIAL",
        "practitioner": {"name": "Sam", "role": "SW", "contact": "sam@x"},
        "consent": {"status": "given"},
        "subject_informed": {"informed": true},
        "urgency": {"level": "routine"},
        "disclosed_summary": "Notes.",
        "retention": {"days": 30},
        "subject_refs": ["case:ABC123"],
    });
    assert!(parse_json(&bytes_of(&base), &cx()).is_ok());
    for (member, array) in [
        ("practitioner", json!(["Sam", "SW", "sam@x"])),
        ("retention", json!([null, 30])),
        ("consent", json!(["given", null, null])),
    ] {
        let mut v = base.clone();
        v[member] = array;
        match parse_json(&bytes_of(&v), &cx()) {
            Err(EnvelopeError::Invalid(errors)) => assert_eq!(
                errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
                [member],
                "{member}"
            ),
            other => panic!("{member} as an array: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inbound metadata.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn inbound_meta_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(meta) = serde_json::from_slice::<InboundMeta>(&bytes) {
            let back: InboundMeta = serde_json::from_slice(&bytes_of(&meta)).expect("parses back");
            prop_assert_eq!(back, meta);
        }
    }

    #[test]
    fn inbound_meta_shaped_json_never_panics(v in object_with(&[
        "transfer_id", "recipient", "sender", "sender_name", "purpose", "marking", "retain_until",
    ])) {
        if let Ok(meta) = serde_json::from_slice::<InboundMeta>(&bytes_of(&v)) {
            let back: InboundMeta = serde_json::from_slice(&bytes_of(&meta)).expect("parses back");
            prop_assert_eq!(back, meta);
        }
    }

    #[test]
    fn valid_inbound_meta_round_trips(meta in inbound_meta(), form in 0usize..4) {
        let json = bytes_of(&meta);
        let back: InboundMeta = serde_json::from_slice(&json).expect("parses back");
        prop_assert_eq!(&back, &meta);
        prop_assert_eq!(bytes_of(&back), json);
        // The transfer id may come in any of the forms a UUID is written in.
        let id = meta.transfer_id.to_string().parse::<uuid::Uuid>().expect("a uuid");
        let written = match form {
            0 => id.simple().to_string(),
            1 => id.braced().to_string(),
            2 => id.urn().to_string(),
            _ => id.hyphenated().to_string().to_uppercase(),
        };
        let mut v = serde_json::to_value(&meta).expect("serialises");
        v["transfer_id"] = json!(written);
        let back: InboundMeta = serde_json::from_value(v).expect("accepted");
        prop_assert_eq!(back, meta);
    }

    #[test]
    fn inbound_meta_refuses_a_missing_unknown_or_mistyped_member(
        meta in inbound_meta(),
        member in one_of(&["transfer_id", "recipient", "sender", "sender_name", "purpose", "marking", "retain_until"]),
        wrong in one_of(&[Wrong::Number, Wrong::Bool, Wrong::Array, Wrong::Object]),
    ) {
        let v = serde_json::to_value(&meta).expect("serialises");
        let mut missing = v.clone();
        missing.as_object_mut().expect("an object").remove(member);
        prop_assert!(serde_json::from_value::<InboundMeta>(missing).is_err());
        let mut unknown = v.clone();
        unknown[format!("{member}_extra")] = json!("x");
        prop_assert!(serde_json::from_value::<InboundMeta>(unknown).is_err());
        let mut mistyped = v;
        mistyped[member] = wrong.value();
        prop_assert!(serde_json::from_value::<InboundMeta>(mistyped).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions not to share, and rationales.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decision_and_rationale_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(DecisionError::Invalid(errors)) = parse_decision(&bytes, &decision_cx()) {
            prop_assert!(!errors.is_empty());
        }
        if let Err(DecisionError::Invalid(errors)) = parse_rationale(&bytes) {
            prop_assert!(!errors.is_empty());
        }
    }

    #[test]
    fn decision_shaped_json_never_panics(v in object_with(&[
        "recipients", "purpose", "reasons", "practitioner", "request", "subject_refs",
        "data_categories", "justification",
    ])) {
        let bytes = bytes_of(&v);
        match parse_decision(&bytes, &decision_cx()) {
            Ok(d) => {
                let again = parse_decision(&bytes_of(&decision_json(&d)), &decision_cx());
                prop_assert_eq!(again.as_ref(), Ok(&d));
            }
            Err(DecisionError::Malformed(m)) => prop_assert!(false, "valid JSON is malformed: {}", m),
            Err(DecisionError::Invalid(errors)) => prop_assert!(!errors.is_empty()),
        }
        match parse_rationale(&bytes) {
            Ok(r) => {
                let again = parse_rationale(&bytes_of(&rationale_json(&r)));
                prop_assert_eq!(again.as_ref(), Ok(&r));
            }
            Err(DecisionError::Malformed(m)) => prop_assert!(false, "valid JSON is malformed: {}", m),
            Err(DecisionError::Invalid(errors)) => prop_assert!(!errors.is_empty()),
        }
    }

    #[test]
    fn valid_decisions_are_accepted_and_round_trip(raw in decision()) {
        let parsed = parse_decision(&bytes_of(&raw), &decision_cx());
        prop_assert!(parsed.is_ok(), "refused: {parsed:?}");
        let d = parsed.unwrap();
        let recipients: Vec<String> = d.recipients.iter().map(ToString::to_string).collect();
        prop_assert_eq!(recipients, texts(&raw, "recipients"));
        prop_assert_eq!(
            d.purpose.as_ref().map(ToString::to_string),
            raw["purpose"].as_str().map(str::to_owned)
        );
        prop_assert_eq!(d.reasons.expose(), trimmed(&raw, "reasons"));
        let refs: Vec<String> = d.subject_refs.iter().map(SubjectRef::expose).collect();
        prop_assert_eq!(refs, normalised_refs(&texts(&raw, "subject_refs")));
        let again = parse_decision(&bytes_of(&decision_json(&d)), &decision_cx());
        prop_assert_eq!(again.as_ref(), Ok(&d));
    }

    #[test]
    fn valid_rationales_are_accepted_and_round_trip(raw in rationale()) {
        let parsed = parse_rationale(&bytes_of(&raw));
        prop_assert!(parsed.is_ok(), "refused: {parsed:?}");
        let r = parsed.unwrap();
        prop_assert_eq!(r.justification.expose(), trimmed(&raw, "justification"));
        prop_assert_eq!(r.practitioner.is_some(), raw.get("practitioner").is_some());
        let again = parse_rationale(&bytes_of(&rationale_json(&r)));
        prop_assert_eq!(again.as_ref(), Ok(&r));
    }

    #[test]
    fn a_decision_field_of_the_wrong_type_is_refused_by_name(
        raw in decision(),
        (path, wrong) in wrong_field(DECISION_FIELDS),
    ) {
        let mut v = raw;
        set_path(&mut v, path, wrong.value());
        match parse_decision(&bytes_of(&v), &decision_cx()) {
            Err(DecisionError::Invalid(errors)) => assert_names_field(&errors, path)?,
            other => prop_assert!(false, "{path} = {wrong:?}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_rationale_field_of_the_wrong_type_is_refused_by_name(
        raw in rationale(),
        (path, wrong) in wrong_field(RATIONALE_FIELDS),
    ) {
        let mut v = raw;
        set_path(&mut v, path, wrong.value());
        match parse_rationale(&bytes_of(&v)) {
            Err(DecisionError::Invalid(errors)) => assert_names_field(&errors, path)?,
            other => prop_assert!(false, "{path} = {wrong:?}: expected a refusal, got {other:?}"),
        }
    }
}
