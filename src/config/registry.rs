//! Reads `marking.toml`, `purposes.toml`, `organisations.toml` and `agreements.toml` into the
//! domain registry. Each entry is read on its own and every problem is reported with its line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use time::Date;
use toml::Spanned;
use toml::de::DeValue;

use super::source::{ConfigErrors, Doc, Errors};
use super::{Paths, Source};
use crate::domain::ids::{AgreementId, OrgId, PurposeId};
use crate::domain::lawful::LawfulBasis;
use crate::domain::marking::{MarkingScheme, Rank, SchemeAt};
use crate::domain::registry::{
    Agreement, CertFingerprint, Channel, ClientIdentity, Endpoint, OrgKind, Organisation, Purpose,
    Registry, RegistryAt, Sector,
};

/// The registry files of one configuration directory (`None`: could not be read, already reported).
pub struct RegistrySources {
    pub marking: Option<Source>,
    pub purposes: Option<Source>,
    pub organisations: Option<Source>,
    pub agreements: Option<Source>,
}

impl RegistrySources {
    pub const FILES: [&'static str; 4] = [
        "marking.toml",
        "purposes.toml",
        "organisations.toml",
        "agreements.toml",
    ];
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarking {
    levels: Vec<String>,
    #[serde(default)]
    descriptors: Vec<String>,
    #[serde(default)]
    legacy: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: String,
    title: String,
    lawful_bases: Vec<String>,
    // Both required, with no default: a forgotten `statutory_only` must not quietly open an s.115
    // gateway to voluntary organisations.
    statutory_only: bool,
    special_category: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    san: Option<String>,
    fingerprint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    channel: String,
    address: Option<String>,
    url: Option<String>,
    age_recipients: Option<Vec<String>>,
    age_recipients_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisation {
    id: String,
    name: String,
    kind: String,
    sector: Option<String>,
    clearance: String,
    #[serde(default)]
    identities: Vec<RawIdentity>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
}

/// TOML has native dates; people also write them as strings. Accept both.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDate {
    Native(toml::value::Datetime),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgreement {
    id: String,
    title: String,
    parties: Vec<String>,
    purposes: Vec<String>,
    lawful_bases: Vec<String>,
    max_marking: String,
    valid_from: RawDate,
    valid_until: RawDate,
}

fn parse_date(d: &RawDate) -> Option<Date> {
    let text = match d {
        RawDate::Native(dt) if dt.time.is_none() && dt.offset.is_none() => dt.to_string(),
        RawDate::Native(_) => return None,
        RawDate::Text(s) => s.trim().to_owned(),
    };
    Date::parse(
        &text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

fn parse_source<'a>(s: &'a Option<Source>, errors: &mut Errors) -> Option<Doc<'a>> {
    s.as_ref()
        .and_then(|s| Doc::parse(&s.name, &s.text, errors))
}

/// Reads the four registry files. `paths` expands `${state_dir}` in key file paths.
pub fn load(src: &RegistrySources, paths: &Paths) -> Result<Registry, ConfigErrors> {
    let mut errors = Errors::default();
    let marking_doc = parse_source(&src.marking, &mut errors);
    let purposes_doc = parse_source(&src.purposes, &mut errors);
    let orgs_doc = parse_source(&src.organisations, &mut errors);
    let agreements_doc = parse_source(&src.agreements, &mut errors);

    let scheme = marking_doc.as_ref().and_then(|d| marking(d, &mut errors));
    let (purposes, purpose_entries) = purposes_doc
        .as_ref()
        .map(|d| purposes(d, &mut errors))
        .unwrap_or_default();
    let (orgs, org_entries) = match (&orgs_doc, &scheme) {
        (Some(d), Some(s)) => organisations(d, s, paths, &mut errors),
        _ => Default::default(),
    };
    let (agreements, agreement_entries) = match (&agreements_doc, &scheme) {
        (Some(d), Some(s)) => agreements(d, s, &mut errors),
        _ => Default::default(),
    };

    // Cross-references are only meaningful once every file has read cleanly. (A missing scheme
    // has always recorded its error; the fallback message is belt and braces.)
    // A file that could not be read at all was reported by the caller.
    let missing = [
        &src.marking,
        &src.purposes,
        &src.organisations,
        &src.agreements,
    ]
    .iter()
    .any(|s| s.is_none());
    let Some(scheme) = scheme else {
        if errors.0.is_empty() && !missing {
            errors.general("marking.toml", None, "the marking scheme could not be read");
        }
        return Err(ConfigErrors(errors.0));
    };
    if !errors.0.is_empty() || missing {
        return Err(ConfigErrors(errors.0));
    }
    match Registry::new(scheme, orgs, purposes, agreements) {
        Ok(r) => Ok(r),
        Err(problems) => {
            for p in problems {
                let (doc, entry) = match p.at {
                    RegistryAt::Organisation(i) => (&orgs_doc, org_entries.get(i)),
                    RegistryAt::Purpose(i) => (&purposes_doc, purpose_entries.get(i)),
                    RegistryAt::Agreement(i) => (&agreements_doc, agreement_entries.get(i)),
                };
                if let Some(doc) = doc {
                    let span = entry.and_then(|e| doc.entry_field(e, p.field));
                    let key = entry_key(&p.at, p.field);
                    errors.push(doc.error_at(span, Some(key), p.message));
                }
            }
            Err(ConfigErrors(errors.0))
        }
    }
}

fn entry_key(at: &RegistryAt, field: &str) -> String {
    match at {
        RegistryAt::Organisation(i) => format!("organisation[{i}].{field}"),
        RegistryAt::Purpose(i) => format!("purpose[{i}].{field}"),
        RegistryAt::Agreement(i) => format!("agreement[{i}].{field}"),
    }
}

fn marking(doc: &Doc<'_>, errors: &mut Errors) -> Option<MarkingScheme> {
    let root = Spanned::new(doc.root.span(), DeValue::Table(doc.root.get_ref().clone()));
    let raw: RawMarking = doc.deserialize(&root, "marking", errors)?;
    let legacy: Vec<(String, String)> = raw.legacy.clone().into_iter().collect();
    match MarkingScheme::new(&raw.levels, &raw.descriptors, &legacy) {
        Ok(s) => Some(s),
        Err(problems) => {
            for (at, e) in problems {
                let key = match at {
                    SchemeAt::Levels => "levels".to_owned(),
                    SchemeAt::Level(i) => format!("levels[{i}]"),
                    SchemeAt::LegacyTable => "legacy".to_owned(),
                    SchemeAt::Legacy(i) => {
                        format!("legacy.{}", legacy.get(i).map_or("", |(k, _)| k.as_str()))
                    }
                };
                errors.push(doc.error_key(&key, e.to_string()));
            }
            None
        }
    }
}

fn lawful_bases(
    list: &[String],
    doc: &Doc<'_>,
    entry: &Spanned<DeValue<'_>>,
    key: &str,
    errors: &mut Errors,
) -> Vec<LawfulBasis> {
    let mut out = Vec::new();
    for (j, b) in list.iter().enumerate() {
        match LawfulBasis::parse(b) {
            Some(b) => out.push(b),
            None => errors.push(doc.error_at(
                doc.entry_field(entry, &format!("lawful_bases[{j}]")),
                Some(format!("{key}.lawful_bases[{j}]")),
                format!(
                    "`{b}` is not a UK GDPR Article 6 basis; use one of {}",
                    LawfulBasis::expected()
                ),
            )),
        }
    }
    out
}

/// Parses an id, reporting a bad one at its field.
fn id<T: std::str::FromStr<Err = crate::domain::ids::InvalidId>>(
    s: &str,
    doc: &Doc<'_>,
    entry: &Spanned<DeValue<'_>>,
    field: &str,
    key: &str,
    errors: &mut Errors,
) -> Option<T> {
    match s.trim().parse::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(doc.error_at(
                doc.entry_field(entry, field),
                Some(format!("{key}.{field}")),
                e.to_string(),
            ));
            None
        }
    }
}

fn purposes<'a>(doc: &Doc<'a>, errors: &mut Errors) -> (Vec<Purpose>, Vec<Spanned<DeValue<'a>>>) {
    doc.reject_unknown_top_level(&["purpose"], errors);
    let entries = doc.entries("purpose", errors);
    if entries.is_empty() {
        errors.push(doc.error_at(
            None,
            None,
            "no purposes defined: add at least one [[purpose]]",
        ));
    }
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("purpose[{i}]");
        let Some(raw) = doc.deserialize::<RawPurpose>(entry, &key, errors) else {
            continue;
        };
        let pid = id::<PurposeId>(&raw.id, doc, entry, "id", &key, errors);
        let bases = lawful_bases(&raw.lawful_bases, doc, entry, &key, errors);
        if let Some(pid) = pid {
            out.push(Purpose {
                id: pid,
                title: raw.title.trim().to_owned(),
                lawful_bases: bases.into_iter().collect(),
                statutory_only: raw.statutory_only,
                special_category: raw.special_category,
            });
            kept.push(entry.clone());
        }
    }
    (out, kept)
}

fn rank(
    s: &str,
    scheme: &MarkingScheme,
    doc: &Doc<'_>,
    entry: &Spanned<DeValue<'_>>,
    field: &str,
    key: &str,
    errors: &mut Errors,
) -> Option<Rank> {
    let r = scheme.rank_of(s);
    if r.is_none() {
        errors.push(doc.error_at(
            doc.entry_field(entry, field),
            Some(format!("{key}.{field}")),
            format!(
                "`{s}` is not a level of the marking scale; use one of {}",
                scheme.levels().join(", ")
            ),
        ));
    }
    r
}

fn organisations<'a>(
    doc: &Doc<'a>,
    scheme: &MarkingScheme,
    paths: &Paths,
    errors: &mut Errors,
) -> (Vec<Organisation>, Vec<Spanned<DeValue<'a>>>) {
    doc.reject_unknown_top_level(&["organisation"], errors);
    let entries = doc.entries("organisation", errors);
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("organisation[{i}]");
        let Some(raw) = doc.deserialize::<RawOrganisation>(entry, &key, errors) else {
            continue;
        };
        let at = |field: &str| doc.entry_field(entry, field);
        let before = errors.0.len();
        let oid = id::<OrgId>(&raw.id, doc, entry, "id", &key, errors);
        let sector = raw.sector.as_deref().map(|s| (s, Sector::parse(s)));
        let kind = match (raw.kind.as_str(), sector) {
            ("statutory", Some((_, Some(sector)))) => Some(OrgKind::Statutory(sector)),
            ("statutory", Some((s, None))) => {
                errors.push(doc.error_at(
                    at("sector"),
                    Some(format!("{key}.sector")),
                    format!("`{s}` is not a sector; use one of {}", Sector::NAMES),
                ));
                None
            }
            ("statutory", None) => {
                errors.push(doc.error_at(
                    at("kind"),
                    Some(format!("{key}.sector")),
                    format!(
                        "a statutory organisation needs a `sector`: one of {}",
                        Sector::NAMES
                    ),
                ));
                None
            }
            ("voluntary" | "private", Some(_)) => {
                errors.push(doc.error_at(
                    at("sector"),
                    Some(format!("{key}.sector")),
                    "only statutory organisations have a sector",
                ));
                None
            }
            ("voluntary", None) => Some(OrgKind::Voluntary),
            ("private", None) => Some(OrgKind::Private),
            (other, _) => {
                errors.push(doc.error_at(at("kind"), Some(format!("{key}.kind")), format!("`{other}` is not a kind of organisation; use statutory, voluntary or private")));
                None
            }
        };
        let clearance = rank(
            &raw.clearance,
            scheme,
            doc,
            entry,
            "clearance",
            &key,
            errors,
        );
        if clearance.is_some_and(Rank::is_above_official_tier) {
            errors.push(doc.error_at(at("clearance"), Some(format!("{key}.clearance")), "a clearance above the OFFICIAL tier has no effect: this gateway never carries SECRET material"));
        }

        let mut identities = Vec::new();
        for (j, ident) in raw.identities.iter().enumerate() {
            let field = format!("identities[{j}]");
            match (&ident.san, &ident.fingerprint) {
                (Some(san), None) if !san.trim().is_empty() => {
                    identities.push(ClientIdentity::San(san.trim().to_owned()))
                }
                (None, Some(fp)) => match fp.parse::<CertFingerprint>() {
                    Ok(fp) => identities.push(ClientIdentity::Fingerprint(fp)),
                    Err(e) => errors.push(doc.error_at(
                        at(&field),
                        Some(format!("{key}.{field}")),
                        e.to_string(),
                    )),
                },
                _ => errors.push(doc.error_at(
                    at(&field),
                    Some(format!("{key}.{field}")),
                    "each identity is either { san = \"...\" } or { fingerprint = \"sha256:...\" }",
                )),
            }
        }

        let mut endpoints = Vec::new();
        for (j, ep) in raw.endpoint.iter().enumerate() {
            let field = format!("endpoint[{j}]");
            let mut bad = |f: &str, msg: String| {
                errors.push(doc.error_at(
                    at(&format!("{field}.{f}")),
                    Some(format!("{key}.{field}.{f}")),
                    msg,
                ))
            };
            let channel = match (ep.channel.as_str(), &ep.address, &ep.url) {
                ("email", Some(a), None) => {
                    if valid_email(a) {
                        Some(Channel::Email {
                            address: a.trim().to_owned(),
                        })
                    } else {
                        bad("address", format!("`{a}` is not an email address"));
                        None
                    }
                }
                ("https", None, Some(u)) => match u.parse::<http::Uri>() {
                    Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {
                        Some(Channel::Https {
                            url: u.trim().to_owned(),
                        })
                    }
                    _ => {
                        bad("url", format!("`{u}` is not an https:// URL"));
                        None
                    }
                },
                ("email", _, _) => {
                    bad(
                        "address",
                        "an email endpoint needs `address` (and no `url`)".to_owned(),
                    );
                    None
                }
                ("https", _, _) => {
                    bad(
                        "url",
                        "an https endpoint needs `url` (and no `address`)".to_owned(),
                    );
                    None
                }
                (other, _, _) => {
                    bad(
                        "channel",
                        format!("`{other}` is not a delivery channel; use email or https"),
                    );
                    None
                }
            };
            let mut recipients = ep.age_recipients.clone().unwrap_or_default();
            if let Some(file) = &ep.age_recipients_file {
                match read_recipients_file(&paths.expand(file)) {
                    Ok(mut r) => recipients.append(&mut r),
                    Err(msg) => bad("age_recipients_file", msg),
                }
            }
            if recipients.is_empty() {
                bad("age_recipients", "at least one age recipient (age1...) is needed to seal payloads for this organisation; give `age_recipients` or `age_recipients_file`".to_owned());
            }
            for r in &recipients {
                if r.parse::<age::x25519::Recipient>().is_err() {
                    bad(
                        "age_recipients",
                        format!("`{r}` is not an age X25519 recipient (age1...)"),
                    );
                }
            }
            if let Some(channel) = channel {
                endpoints.push(Endpoint {
                    channel,
                    age_recipients: recipients,
                });
            }
        }

        if errors.0.len() == before
            && let (Some(oid), Some(kind), Some(clearance)) = (oid, kind, clearance)
        {
            out.push(Organisation {
                id: oid,
                name: raw.name.trim().to_owned(),
                kind,
                clearance,
                identities,
                endpoints,
            });
            kept.push(entry.clone());
        }
    }
    (out, kept)
}

fn valid_email(a: &str) -> bool {
    let a = a.trim();
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !a.contains(char::is_whitespace)
                && a.matches('@').count() == 1
        }
        None => false,
    }
}

/// An age recipients file: one `age1...` per line; blank lines and `#` comments ignored.
fn read_recipients_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

fn agreements<'a>(
    doc: &Doc<'a>,
    scheme: &MarkingScheme,
    errors: &mut Errors,
) -> (Vec<Agreement>, Vec<Spanned<DeValue<'a>>>) {
    doc.reject_unknown_top_level(&["agreement"], errors);
    let entries = doc.entries("agreement", errors);
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("agreement[{i}]");
        let Some(raw) = doc.deserialize::<RawAgreement>(entry, &key, errors) else {
            continue;
        };
        let before = errors.0.len();
        let aid = id::<AgreementId>(&raw.id, doc, entry, "id", &key, errors);
        let parties: Vec<OrgId> = raw
            .parties
            .iter()
            .enumerate()
            .filter_map(|(j, p)| id(p, doc, entry, &format!("parties[{j}]"), &key, errors))
            .collect();
        let purposes: Vec<PurposeId> = raw
            .purposes
            .iter()
            .enumerate()
            .filter_map(|(j, p)| id(p, doc, entry, &format!("purposes[{j}]"), &key, errors))
            .collect();
        let bases = lawful_bases(&raw.lawful_bases, doc, entry, &key, errors);
        let max = rank(
            &raw.max_marking,
            scheme,
            doc,
            entry,
            "max_marking",
            &key,
            errors,
        );
        let mut date = |d: &RawDate, field: &str| {
            let parsed = parse_date(d);
            if parsed.is_none() {
                errors.push(doc.error_at(
                    doc.entry_field(entry, field),
                    Some(format!("{key}.{field}")),
                    "expected a date such as 2026-04-01",
                ));
            }
            parsed
        };
        let from = date(&raw.valid_from, "valid_from");
        let until = date(&raw.valid_until, "valid_until");
        if errors.0.len() == before
            && let (Some(aid), Some(max), Some(from), Some(until)) = (aid, max, from, until)
        {
            out.push(Agreement {
                id: aid,
                title: raw.title.trim().to_owned(),
                parties: parties.into_iter().collect(),
                purposes: purposes.into_iter().collect(),
                lawful_bases: bases.into_iter().collect(),
                max_marking: max,
                valid_from: from,
                valid_until: until,
            });
            kept.push(entry.clone());
        }
    }
    (out, kept)
}
