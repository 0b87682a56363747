//! Reads `marking.toml`, `purposes.toml`, `organisations.toml` and `agreements.toml` into the
//! domain registry. Each entry is read on its own and every problem is reported with its line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use time::Date;
use toml::Spanned;
use toml::de::DeValue;

use super::source::{ConfigError, ConfigErrors, Doc, Errors};
use super::{Paths, Source};
use crate::domain::ids::{AgreementId, CaId, OrgId, PeerId, PurposeId};
use crate::domain::lawful::LawfulBasis;
use crate::domain::marking::{MarkingScheme, Rank, SchemeAt};
use crate::domain::registry::{
    Agreement, CertFingerprint, Channel, ClientIdentity, Contact, Contacts, Declared, Endpoint,
    OrgKind, Organisation, Peer, Person, Purpose, Registry, RegistryAt, RegistryError, Role,
    Sector, SignIn, email_address,
};

/// Placeholder for this gateway's own API port in endpoint URLs (a gateway delivering to itself,
/// as the demo does); replaced at delivery time with the port actually bound.
pub const API_PORT: &str = "${api_port}";

/// The registry files of one configuration directory (`None`: could not be read, already reported).
pub struct RegistrySources {
    pub marking: Option<Source>,
    pub purposes: Option<Source>,
    pub organisations: Option<Source>,
    pub agreements: Option<Source>,
    /// `peers.toml` is optional: without it no peer gateway may deliver to this one.
    pub peers: Option<Source>,
    /// `people.toml` is optional: without it nobody signs in to the web pages.
    pub people: Option<Source>,
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
    /// The trusted CA that may issue it: a name from `tls.client_cas`, or the SHA-256 of that
    /// CA's certificate.
    ca: Option<String>,
}

/// The trusted client CAs identities may name (`tls.client_cas`): by name, and by the SHA-256
/// of each of their certificates.
#[derive(Debug, Clone, Default)]
pub struct KnownCas {
    pub names: Vec<CaId>,
    pub fingerprints: Vec<(CertFingerprint, CaId)>,
}

impl KnownCas {
    fn listed(&self) -> String {
        if self.names.is_empty() {
            return "none is configured".into();
        }
        self.names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn example(&self) -> String {
        self.names
            .first()
            .map_or_else(|| "local".to_owned(), ToString::to_string)
    }

    /// The CA an identity's `ca` names, or why it names none.
    fn resolve(&self, given: &str) -> Result<CaId, CaRefError> {
        let given = given.trim();
        if let Ok(id) = given.parse::<CaId>()
            && self.names.contains(&id)
        {
            return Ok(id);
        }
        if let Ok(fp) = given.parse::<CertFingerprint>() {
            return self
                .fingerprints
                .iter()
                .find(|(f, _)| *f == fp)
                .map(|(_, id)| id.clone())
                .ok_or_else(|| CaRefError::UnknownFingerprint {
                    given: given.to_owned(),
                    listed: self.listed(),
                });
        }
        Err(CaRefError::Unknown {
            given: given.to_owned(),
            listed: self.listed(),
        })
    }
}

/// Why an identity's `ca` names no trusted CA.
#[derive(Debug, thiserror::Error)]
enum CaRefError {
    #[error(
        "`{given}` is not the SHA-256 of a certificate in tls.client_cas (the trusted CAs are {listed})"
    )]
    UnknownFingerprint { given: String, listed: String },
    #[error("`{given}` is not one of tls.client_cas (the trusted CAs are {listed})")]
    Unknown { given: String, listed: String },
    #[error("{0}")]
    Invalid(#[from] crate::domain::ids::InvalidId),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    channel: String,
    address: Option<String>,
    url: Option<String>,
    ca: Option<String>,
    #[serde(default)]
    tls_only: bool,
    max_marking: Option<String>,
    age_recipients: Option<Vec<String>>,
    age_recipients_file: Option<String>,
    /// `portal`: the age identity this gateway holds for the organisation.
    identity: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: String,
    name: String,
    #[serde(default)]
    identities: Vec<RawIdentity>,
    #[serde(default)]
    senders: Vec<String>,
    /// Take purposes this gateway does not know as the peer states them.
    #[serde(default)]
    purposes_as_given: bool,
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
    endpoint: Option<RawEndpoint>,
    sign_in: Option<String>,
    safeguarding_lead: Option<RawContact>,
    dpo: Option<RawContact>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContact {
    name: String,
    contact: String,
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
    #[serde(default)]
    answer_within_working_days: Option<i64>,
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

/// A loaded registry, and what is valid but worth a warning (with file and line).
pub struct Loaded {
    pub registry: Registry,
    pub warnings: Vec<ConfigError>,
}

/// Reads the registry files. `paths` expands `${state_dir}` in key file paths; `cas` are the
/// trusted client CAs identities may name (`None`: they could not be read, and are not checked
/// here, so that one mistake is not reported twice).
pub fn load(
    src: &RegistrySources,
    paths: &Paths,
    cas: Option<&KnownCas>,
) -> Result<Loaded, ConfigErrors> {
    let mut errors = Errors::default();
    let marking_doc = parse_source(&src.marking, &mut errors);
    let purposes_doc = parse_source(&src.purposes, &mut errors);
    let orgs_doc = parse_source(&src.organisations, &mut errors);
    let agreements_doc = parse_source(&src.agreements, &mut errors);
    let peers_doc = parse_source(&src.peers, &mut errors);
    let people_doc = parse_source(&src.people, &mut errors);

    let scheme = marking_doc.as_ref().and_then(|d| marking(d, &mut errors));
    let (purposes, purpose_entries) = purposes_doc
        .as_ref()
        .map(|d| purposes(d, &mut errors))
        .unwrap_or_default();
    // Without a valid scale the levels cannot be checked, but everything else still is.
    let (orgs, org_entries) = orgs_doc
        .as_ref()
        .map(|d| organisations(d, scheme.as_ref(), paths, cas, &mut errors))
        .unwrap_or_default();
    let (agreements, agreement_entries) = agreements_doc
        .as_ref()
        .map(|d| agreements(d, scheme.as_ref(), &mut errors))
        .unwrap_or_default();
    let (peers, peer_entries) = peers_doc
        .as_ref()
        .map(|d| peers(d, cas, &mut errors))
        .unwrap_or_default();

    // Cross-references are checked whatever else failed, against every id the files declare
    // (so an entry that failed for its own reasons is not reported again as missing wherever
    // it is used). A file that could not be read at all was reported by the caller.
    let missing = [
        &src.marking,
        &src.purposes,
        &src.organisations,
        &src.agreements,
    ]
    .iter()
    .any(|s| s.is_none());
    let declared = Declared {
        organisations: declared_ids(&orgs_doc, "organisation"),
        purposes: declared_ids(&purposes_doc, "purpose"),
    };
    let people = people_doc
        .as_ref()
        .map(|d| people(d, &declared, &mut errors))
        .unwrap_or_default();
    // Where a problem of the registry (an error or a warning) is, in the files.
    let place = |p: RegistryError| {
        let (doc, entry) = match p.at {
            RegistryAt::Organisation(i) => (&orgs_doc, org_entries.get(i)),
            RegistryAt::Purpose(i) => (&purposes_doc, purpose_entries.get(i)),
            RegistryAt::Agreement(i) => (&agreements_doc, agreement_entries.get(i)),
            RegistryAt::Peer(i) => (&peers_doc, peer_entries.get(i)),
        };
        doc.as_ref().map(|doc| {
            let span = entry.and_then(|e| doc.entry_field(e, p.field));
            doc.error_at(span, Some(entry_key(&p.at, p.field)), p.message)
        })
    };
    let problems = match scheme
        .clone()
        .or_else(placeholder_scheme)
        .map(|s| Registry::new_declared(s, orgs, purposes, agreements, peers, &declared))
    {
        Some(Ok(registry)) if errors.0.is_empty() && !missing && scheme.is_some() => {
            let warnings = registry
                .warnings()
                .iter()
                .cloned()
                .filter_map(place)
                .collect();
            let registry = registry.with_people(people);
            return Ok(Loaded { registry, warnings });
        }
        Some(Err(problems)) => problems,
        _ => Vec::new(),
    };
    errors.0.extend(problems.into_iter().filter_map(place));
    if errors.0.is_empty() {
        errors.general("configuration", None, "the registry could not be loaded");
    }
    Err(ConfigErrors(errors.0))
}

/// The ids an array of tables declares, valid entries or not.
fn declared_ids<T: std::str::FromStr + Ord>(
    doc: &Option<Doc<'_>>,
    key: &str,
) -> std::collections::BTreeSet<T> {
    let Some(doc) = doc else {
        return Default::default();
    };
    let Some(items) = doc
        .root
        .get_ref()
        .get(key)
        .and_then(|v| v.get_ref().as_array())
    else {
        return Default::default();
    };
    items
        .iter()
        .filter_map(|e| {
            e.get_ref()
                .as_table()?
                .get("id")?
                .get_ref()
                .as_str()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// A stand-in scale for checking cross-references when `marking.toml` itself is broken (a
/// one-level scale with every legacy label mapped, which is always valid).
fn placeholder_scheme() -> Option<MarkingScheme> {
    let legacy: Vec<(String, String)> = crate::domain::marking::LEGACY_LABELS
        .iter()
        .map(|l| ((*l).to_owned(), "OFFICIAL".to_owned()))
        .collect();
    MarkingScheme::new(&["OFFICIAL".to_owned()], &[], &legacy).ok()
}

fn entry_key(at: &RegistryAt, field: &str) -> String {
    match at {
        RegistryAt::Organisation(i) => format!("organisation[{i}].{field}"),
        RegistryAt::Purpose(i) => format!("purpose[{i}].{field}"),
        RegistryAt::Agreement(i) => format!("agreement[{i}].{field}"),
        RegistryAt::Peer(i) => format!("peer[{i}].{field}"),
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
    scheme: Option<&MarkingScheme>,
    doc: &Doc<'_>,
    entry: &Spanned<DeValue<'_>>,
    field: &str,
    key: &str,
    errors: &mut Errors,
) -> Option<Rank> {
    // Without a valid scale, levels are not checked; a stand-in keeps the entry so that its
    // other fields and references still are.
    let Some(scheme) = scheme else {
        return Some(Rank::Level(0));
    };
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
    scheme: Option<&MarkingScheme>,
    paths: &Paths,
    cas: Option<&KnownCas>,
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

        let identities = identities(&raw.identities, doc, entry, &key, cas, errors);
        let sign_in = match raw.sign_in.as_deref().map(str::trim) {
            None | Some("code") => Some(SignIn::Code),
            Some("passkey") => Some(SignIn::Passkey),
            Some(other) => {
                errors.push(doc.error_at(
                    at("sign_in"),
                    Some(format!("{key}.sign_in")),
                    format!("`{other}` is not a way to sign in; use code (a code emailed to the person, the default) or passkey"),
                ));
                None
            }
        };

        let endpoint = raw
            .endpoint
            .as_ref()
            .and_then(|ep| endpoint(ep, scheme, paths, doc, entry, &key, errors));
        if raw.endpoint.is_some() && endpoint.is_none() {
            // Its errors are recorded; make sure the organisation is not kept without them.
            continue;
        }

        let mut contact = |raw: &Option<RawContact>, field: &str| {
            let raw = raw.as_ref()?;
            let (name, reach) = (raw.name.trim(), raw.contact.trim());
            if name.is_empty() || reach.is_empty() {
                errors.push(doc.error_at(
                    at(field),
                    Some(format!("{key}.{field}")),
                    format!("`{field}` needs a `name` and a `contact` (a phone number or an email address): the pages tell the organisation's people whom to ask"),
                ));
                return None;
            }
            Some(Contact {
                name: name.to_owned(),
                contact: reach.to_owned(),
            })
        };
        let contacts = Contacts {
            safeguarding_lead: contact(&raw.safeguarding_lead, "safeguarding_lead"),
            dpo: contact(&raw.dpo, "dpo"),
        };

        if errors.0.len() == before
            && let (Some(oid), Some(kind), Some(clearance), Some(sign_in)) =
                (oid, kind, clearance, sign_in)
        {
            out.push(Organisation {
                id: oid,
                name: raw.name.trim().to_owned(),
                kind,
                clearance,
                identities,
                endpoint,
                sign_in,
                contacts,
            });
            kept.push(entry.clone());
        }
    }
    (out, kept)
}

/// One organisation's `[organisation.endpoint]`.
fn endpoint(
    ep: &RawEndpoint,
    scheme: Option<&MarkingScheme>,
    paths: &Paths,
    doc: &Doc<'_>,
    entry: &Spanned<DeValue<'_>>,
    key: &str,
    errors: &mut Errors,
) -> Option<Endpoint> {
    let before = errors.0.len();
    let mut bad = |f: &str, msg: String| {
        errors.push(doc.error_at(
            doc.entry_field(entry, &format!("endpoint.{f}")),
            Some(format!("{key}.endpoint.{f}")),
            msg,
        ))
    };
    let not_for = |field: &str, present: bool, channel: &str, bad: &mut dyn FnMut(&str, String)| {
        if present {
            bad(
                field,
                format!("`{field}` does not apply to an {channel} endpoint"),
            );
        }
    };
    let channel = match ep.channel.as_str() {
        "email" => {
            not_for("url", ep.url.is_some(), "email", &mut bad);
            not_for("ca", ep.ca.is_some(), "email", &mut bad);
            match &ep.address {
                Some(a) if email_address(a) => Some(Channel::Email {
                    address: a.trim().to_owned(),
                    tls_only: ep.tls_only,
                }),
                Some(a) => {
                    bad("address", format!("`{a}` is not an email address"));
                    None
                }
                None => {
                    bad("channel", "an email endpoint needs `address`".to_owned());
                    None
                }
            }
        }
        "https" => {
            not_for("address", ep.address.is_some(), "https", &mut bad);
            let url = match &ep.url {
                // `${api_port}` (this gateway's own port) is filled in at delivery time.
                Some(u) => match u.replace(API_PORT, "8443").parse::<http::Uri>() {
                    Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {
                        Some(u.trim().to_owned())
                    }
                    _ => {
                        bad("url", format!("`{u}` is not an https:// URL"));
                        None
                    }
                },
                None => {
                    bad("channel", "an https endpoint needs `url` (the peer's inbound endpoint, e.g. https://gateway.example:8443/v1/inbound)".to_owned());
                    None
                }
            };
            // The endpoint is verified against this CA alone, never the system roots.
            let ca = match &ep.ca {
                Some(c) if paths.offline => Some(paths.expand(c).display().to_string()),
                Some(c) => {
                    let path = paths.expand(c);
                    match crate::pki::read_certs(&path) {
                        Ok(_) => Some(path.display().to_string()),
                        Err(e) => {
                            bad(
                                "ca",
                                format!(
                                    "cannot use `{}` as the endpoint's CA: {e}",
                                    path.display()
                                ),
                            );
                            None
                        }
                    }
                }
                None => {
                    bad("channel", "an https endpoint needs `ca`: the CA file its certificate is verified against".to_owned());
                    None
                }
            };
            url.zip(ca)
                .map(|(url, ca_file)| Channel::Https { url, ca_file })
        }
        "inbox" => {
            not_for("address", ep.address.is_some(), "inbox", &mut bad);
            not_for("url", ep.url.is_some(), "inbox", &mut bad);
            not_for("ca", ep.ca.is_some(), "inbox", &mut bad);
            Some(Channel::Inbox)
        }
        "portal" => {
            not_for("address", ep.address.is_some(), "portal", &mut bad);
            not_for("url", ep.url.is_some(), "portal", &mut bad);
            not_for("ca", ep.ca.is_some(), "portal", &mut bad);
            not_for(
                "age_recipients",
                ep.age_recipients.is_some(),
                "portal",
                &mut bad,
            );
            not_for(
                "age_recipients_file",
                ep.age_recipients_file.is_some(),
                "portal",
                &mut bad,
            );
            match &ep.identity {
                Some(i) => Some(Channel::Portal {
                    identity_file: paths.expand(i).display().to_string(),
                }),
                None => {
                    bad("identity", "a portal endpoint needs `identity`: the age identity file this gateway holds for the organisation (`postern keys generate --out FILE` makes one)".to_owned());
                    None
                }
            }
        }
        other => {
            bad(
                "channel",
                format!("`{other}` is not a delivery channel; use email, https, inbox or portal"),
            );
            None
        }
    };
    if ep.identity.is_some() && ep.channel != "portal" {
        bad(
            "identity",
            "`identity` applies to portal endpoints only".to_owned(),
        );
    }
    if ep.tls_only && ep.channel != "email" {
        bad(
            "tls_only",
            "`tls_only` applies to email endpoints only".to_owned(),
        );
    }
    let ceiling = match &ep.max_marking {
        Some(m) => match scheme.map(|sc| (sc, sc.rank_of(m))) {
            None => None,
            Some((_, Some(r))) => Some(r),
            Some((sc, None)) => {
                bad(
                    "max_marking",
                    format!(
                        "`{m}` is not a level of the marking scale; use one of {}",
                        sc.levels().join(", ")
                    ),
                );
                None
            }
        },
        None => None,
    };
    if ep.tls_only && ep.max_marking.is_none() {
        bad("tls_only", "a tls_only endpoint receives content unencrypted inside the message: set `max_marking`, the highest marking it may receive that way".to_owned());
    }
    let mut recipients = ep.age_recipients.clone().unwrap_or_default();
    let mut file_failed = false;
    // A portal's payloads are sealed to the identity this gateway holds for it.
    if let Some(Channel::Portal { identity_file }) = &channel
        && !paths.offline
    {
        match crate::seal::SpoolKey::from_file(Path::new(identity_file)) {
            Ok(k) => recipients.push(k.recipient().to_string()),
            Err(e) => {
                file_failed = true;
                bad(
                    "identity",
                    format!("cannot read the portal identity `{identity_file}`: {e}"),
                );
            }
        }
    }
    if let Some(file) = &ep.age_recipients_file
        && !paths.offline
    {
        let path = paths.expand(file);
        match read_recipients_file(&path) {
            Ok(mut r) => recipients.append(&mut r),
            Err(e) => {
                file_failed = true;
                bad(
                    "age_recipients_file",
                    format!("cannot read `{}`: {e}", path.display()),
                );
            }
        }
    }
    let unread = paths.offline && (ep.age_recipients_file.is_some() || ep.channel == "portal");
    if recipients.is_empty() && !ep.tls_only && !file_failed && !unread {
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
    if errors.0.len() > before {
        return None;
    }
    channel.map(|channel| Endpoint {
        channel,
        age_recipients: recipients,
        ceiling,
    })
}

fn identities(
    raw: &[RawIdentity],
    doc: &Doc<'_>,
    entry: &Spanned<DeValue<'_>>,
    key: &str,
    cas: Option<&KnownCas>,
    errors: &mut Errors,
) -> Vec<ClientIdentity> {
    let mut out = Vec::new();
    for (j, ident) in raw.iter().enumerate() {
        let field = format!("identities[{j}]");
        let mut bad = |msg: String| {
            errors.push(doc.error_at(
                doc.entry_field(entry, &field),
                Some(format!("{key}.{field}")),
                msg,
            ))
        };
        // Without the list of CAs (it failed to load, and said so), a name is taken as given.
        let ca = |given: &str, bad: &mut dyn FnMut(String)| -> Option<CaId> {
            let resolved = match cas {
                Some(known) => known.resolve(given),
                None => given.trim().parse::<CaId>().map_err(CaRefError::from),
            };
            resolved.map_err(|e| bad(e.to_string())).ok()
        };
        match (&ident.san, &ident.fingerprint) {
            (Some(san), None) if !san.trim().is_empty() => match &ident.ca {
                Some(given) => {
                    if let Some(ca) = ca(given, &mut bad) {
                        out.push(ClientIdentity::San {
                            name: san.trim().to_owned(),
                            ca,
                        });
                    }
                }
                None => {
                    let example = cas.map_or_else(|| "local".to_owned(), KnownCas::example);
                    let listed = cas.map_or_else(|| "see tls.client_cas".to_owned(), |c| format!("the trusted CAs are {}", c.listed()));
                    bad(format!("a SAN identity must name the CA that may issue it: write {{ san = \"{}\", ca = \"{example}\" }} ({listed}). Without it, any trusted CA (a peer gateway's, say) could issue a certificate with this name and speak for this party", san.trim()));
                }
            },
            (None, Some(fp)) => {
                let parsed = fp.parse::<CertFingerprint>().map_err(|e| bad(e.to_string())).ok();
                let ca = match &ident.ca {
                    Some(given) => ca(given, &mut bad),
                    None => {
                        let example = cas.map_or_else(|| "local".to_owned(), KnownCas::example);
                        let listed = cas.map_or_else(|| "see tls.client_cas".to_owned(), |c| format!("the trusted CAs are {}", c.listed()));
                        bad(format!("a fingerprint identity must name the CA that issued the certificate: write {{ fingerprint = \"{}\", ca = \"{example}\" }} ({listed}). The identity then matches only when that CA vouches for the certificate, and that CA's revocation list applies to it", fp.trim()));
                        None
                    }
                };
                if let (Some(fingerprint), Some(ca)) = (parsed, ca) {
                    out.push(ClientIdentity::Fingerprint { fingerprint, ca });
                }
            }
            _ => bad("each identity is either { san = \"...\", ca = \"...\" } or { fingerprint = \"sha256:...\", ca = \"...\" }".to_owned()),
        }
    }
    out
}

fn peers<'a>(
    doc: &Doc<'a>,
    cas: Option<&KnownCas>,
    errors: &mut Errors,
) -> (Vec<Peer>, Vec<Spanned<DeValue<'a>>>) {
    doc.reject_unknown_top_level(&["peer"], errors);
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (i, entry) in doc.entries("peer", errors).iter().enumerate() {
        let key = format!("peer[{i}]");
        let Some(raw) = doc.deserialize::<RawPeer>(entry, &key, errors) else {
            continue;
        };
        let before = errors.0.len();
        let pid = id::<PeerId>(&raw.id, doc, entry, "id", &key, errors);
        if pid
            .as_ref()
            .is_some_and(|p| p.as_str() == crate::domain::ids::LOCAL_VIA)
        {
            errors.push(doc.error_at(
                doc.entry_field(entry, "id"),
                Some(format!("{key}.id")),
                format!("`{}` is reserved: it names this gateway's own deliveries into its inbox; give the peer another id", crate::domain::ids::LOCAL_VIA),
            ));
        }
        let identities = identities(&raw.identities, doc, entry, &key, cas, errors);
        if raw.senders.is_empty() {
            errors.push(doc.error_at(
                doc.entry_field(entry, "id"),
                Some(format!("{key}.senders")),
                "list the organisations this peer delivers for, e.g. senders = [\"westshire-cc\"]: a peer may not deliver in anyone else's name".to_owned(),
            ));
        }
        let senders: Vec<OrgId> = raw
            .senders
            .iter()
            .enumerate()
            .filter_map(|(j, s)| id(s, doc, entry, &format!("senders[{j}]"), &key, errors))
            .collect();
        if errors.0.len() == before
            && let Some(pid) = pid
        {
            out.push(Peer {
                id: pid,
                name: raw.name.trim().to_owned(),
                identities,
                senders,
                purposes_as_given: raw.purposes_as_given,
            });
            kept.push(entry.clone());
        }
    }
    (out, kept)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    email: String,
    name: String,
    /// Their job, recorded as the practitioner's role in what they share.
    title: String,
    organisation: String,
    roles: Vec<String>,
}

/// `people.toml`: who signs in to the web pages, for which organisation, with which roles.
fn people(doc: &Doc<'_>, declared: &Declared, errors: &mut Errors) -> Vec<Person> {
    doc.reject_unknown_top_level(&["person"], errors);
    let mut out: Vec<Person> = Vec::new();
    for (i, entry) in doc.entries("person", errors).iter().enumerate() {
        let key = format!("person[{i}]");
        let Some(raw) = doc.deserialize::<RawPerson>(entry, &key, errors) else {
            continue;
        };
        let before = errors.0.len();
        let mut bad = |field: &str, message: String| {
            errors.push(doc.error_at(
                doc.entry_field(entry, field),
                Some(format!("{key}.{field}")),
                message,
            ));
        };
        let email = raw.email.trim().to_ascii_lowercase();
        if !email_address(&email) {
            bad("email", format!("`{}` is not an email address", raw.email));
        } else if out.iter().any(|p| p.email == email) {
            bad(
                "email",
                format!("`{email}` is listed twice: one entry per person"),
            );
        }
        if raw.name.trim().is_empty() {
            bad("name", "give the person's name".to_owned());
        }
        if raw.title.trim().is_empty() {
            bad("title", "give the person's job, e.g. title = \"Youth worker\" (recorded as the practitioner's role)".to_owned());
        }
        let org = match raw.organisation.trim().parse::<OrgId>() {
            Ok(o) if declared.organisations.contains(&o) => Some(o),
            _ => {
                bad(
                    "organisation",
                    format!(
                        "`{}` is not an organisation in organisations.toml",
                        raw.organisation
                    ),
                );
                None
            }
        };
        let mut roles = std::collections::BTreeSet::new();
        for r in &raw.roles {
            match Role::parse(r.trim()) {
                Some(role) => {
                    roles.insert(role);
                }
                None => bad(
                    "roles",
                    format!(
                        "`{r}` is not a role: use {}",
                        Role::ALL
                            .iter()
                            .map(|r| format!("\"{}\"", r.as_str()))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                ),
            }
        }
        if raw.roles.is_empty() {
            bad(
                "roles",
                "give at least one role: roles = [\"share\"] or [\"share\", \"receive\"]"
                    .to_owned(),
            );
        }
        if errors.0.len() == before
            && let Some(org) = org
        {
            out.push(Person {
                email,
                name: raw.name.trim().to_owned(),
                title: raw.title.trim().to_owned(),
                org,
                roles,
            });
        }
    }
    out
}

/// An age recipients file: one `age1...` per line; blank lines and `#` comments ignored.
fn read_recipients_file(path: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

fn agreements<'a>(
    doc: &Doc<'a>,
    scheme: Option<&MarkingScheme>,
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
        // The protocols' fifteen working days, unless the parties agreed otherwise.
        let answer_within = match raw.answer_within_working_days {
            None => Some(None),
            Some(n) => match u32::try_from(n) {
                Ok(n) if (1..=60).contains(&n) => Some(Some(n)),
                _ => {
                    errors.push(doc.error_at(
                        doc.entry_field(entry, "answer_within_working_days"),
                        Some(format!("{key}.answer_within_working_days")),
                        "expected a number of working days from 1 to 60",
                    ));
                    None
                }
            },
        };
        if errors.0.len() == before
            && let (Some(aid), Some(max), Some(from), Some(until), Some(answer_within)) =
                (aid, max, from, until, answer_within)
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
                answer_within_working_days: answer_within,
            });
            kept.push(entry.clone());
        }
    }
    (out, kept)
}
