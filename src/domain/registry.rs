//! The registry: who may send and receive (organisations), why (purposes) and under which signed
//! arrangement (agreements). Built once from configuration and then read by every decision; it
//! also answers "which organisation is this client certificate?" for the TLS layer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use time::Date;

use super::ids::{AgreementId, CaId, OrgId, PeerId, PurposeId};
use super::lawful::LawfulBasis;
use super::marking::{MarkingScheme, Rank};

/// The statutory sectors named in safeguarding guidance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sector {
    LocalAuthority,
    Police,
    Health,
    Education,
    Probation,
    YouthJustice,
    Other,
}

impl Sector {
    pub const NAMES: &'static str =
        "local_authority, police, health, education, probation, youth_justice, other";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "local_authority" => Sector::LocalAuthority,
            "police" => Sector::Police,
            "health" => Sector::Health,
            "education" => Sector::Education,
            "probation" => Sector::Probation,
            "youth_justice" => Sector::YouthJustice,
            "other" => Sector::Other,
            _ => return None,
        })
    }
}

/// Whether an organisation is a statutory body matters in law: some gateways (s.115 Crime and
/// Disorder Act 1998) give no power to share with non-statutory organisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgKind {
    Statutory(Sector),
    Voluntary,
    Private,
}

impl OrgKind {
    pub fn is_statutory(self) -> bool {
        matches!(self, OrgKind::Statutory(_))
    }

    pub fn label(self) -> &'static str {
        match self {
            OrgKind::Statutory(_) => "statutory",
            OrgKind::Voluntary => "voluntary",
            OrgKind::Private => "private",
        }
    }
}

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertFingerprint(pub [u8; 32]);

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a SHA-256 certificate fingerprint: expected 64 hex digits, optionally prefixed `sha256:` and separated by colons"
)]
pub struct InvalidFingerprint(pub String);

impl FromStr for CertFingerprint {
    type Err = InvalidFingerprint;
    /// Accepts `sha256:<hex>` and the colon-separated form `openssl x509 -fingerprint` prints.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("SHA256:"))
            .unwrap_or(t);
        let digits: String = t.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| InvalidFingerprint(s.to_owned()))?;
        Ok(CertFingerprint(out))
    }
}

/// How a client certificate is recognised as an organisation or peer, and which trusted CA may
/// issue it. A certificate matches only if its chain ends at that CA: trusting a second CA (a
/// peer gateway's, say) must not let it issue certificates that speak for this gateway's own
/// organisations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// Exactly this certificate; with `ca`, only as issued by that CA.
    Fingerprint {
        fingerprint: CertFingerprint,
        ca: CaId,
    },
    /// Any certificate from `ca` carrying this subject alternative name (DNS name, URI or email
    /// address; compared without regard to ASCII case). Survives certificate renewal.
    San { name: String, ca: CaId },
}

impl ClientIdentity {
    /// The CA that must have issued a matching certificate.
    pub fn ca(&self) -> &CaId {
        match self {
            ClientIdentity::Fingerprint { ca, .. } | ClientIdentity::San { ca, .. } => ca,
        }
    }
}

/// Why a subject alternative name is a weak identity: one that many CAs issue, so that binding
/// it to one CA is the only thing that keeps it from matching another party's certificate.
pub fn generic_san(name: &str) -> Option<&'static str> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if n == "localhost" || n.ends_with(".localhost") || n == "localhost.localdomain" {
        Some("`localhost` is in the certificates of many CAs")
    } else if n.parse::<std::net::IpAddr>().is_ok() {
        Some("an IP address is not a name unique to one organisation")
    } else if n.starts_with("*.") {
        Some("a wildcard matches any name under it")
    } else if !n.contains(['.', '@', ':']) {
        Some("a single-label name is not unique to one organisation")
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Secure email through the configured relay(s), TLS required. With `tls_only`, the
    /// recipient (an accredited secure email domain whose users cannot run age) receives the
    /// envelope and payload unencrypted inside the message, so only over verified TLS and only
    /// up to the endpoint's ceiling.
    Email { address: String, tls_only: bool },
    /// Direct HTTPS with mutual TLS to the recipient's gateway (`POST .../v1/inbound`), whose
    /// certificate is verified against `ca_file`, not the system roots.
    Https { url: String, ca_file: String },
    /// This gateway's own inbox: the organisation pulls with its client certificate.
    Inbox,
    /// This gateway's own inbox, sealed to a key this gateway holds for the organisation (the
    /// age identity in `identity_file`), so that its people open what arrives on the web pages:
    /// for organisations with no system and no secure email of their own. Its system may still
    /// pull with a client certificate, as from `Inbox`.
    Portal { identity_file: String },
}

impl Channel {
    /// Every [`Channel::kind`] (the API's contract lists them).
    pub const KINDS: &'static [&'static str] = &["email", "https", "inbox", "portal"];

    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Email { .. } => "email",
            Channel::Https { .. } => "https",
            Channel::Inbox => "inbox",
            Channel::Portal { .. } => "portal",
        }
    }
}

/// Where and how an organisation receives transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub channel: Channel,
    /// age recipients (`age1...`) the payload is resealed to for this organisation. Empty only
    /// for a `tls_only` email endpoint.
    pub age_recipients: Vec<String>,
    /// The highest marking this channel may carry; `None`: the organisation's clearance.
    pub ceiling: Option<Rank>,
}

#[derive(Debug, Clone)]
pub struct Organisation {
    pub id: OrgId,
    pub name: String,
    pub kind: OrgKind,
    /// The highest marking this organisation may receive.
    pub clearance: Rank,
    pub identities: Vec<ClientIdentity>,
    /// How it receives; `None`: it can send but not receive.
    pub endpoint: Option<Endpoint>,
    /// How its people sign in to the web pages.
    pub sign_in: SignIn,
    /// Who its people ask before they share, named on every page of the share flow.
    pub contacts: Contacts,
}

/// The people an organisation's staff ask when unsure whether to share (`004` rule 4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contacts {
    pub safeguarding_lead: Option<Contact>,
    pub dpo: Option<Contact>,
}

/// A named person and how to reach them, as an organisation wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    /// A phone number or an email address.
    pub contact: String,
}

/// How an organisation's people sign in to the web pages (`sign_in` in organisations.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignIn {
    /// A one-time code emailed to their registered address, or a passkey if they added one.
    #[default]
    Code,
    /// A passkey. A mailbox alone is a weak key to information about children: a code is sent
    /// only to a person who has no passkey yet, and then lets them do nothing but add one.
    Passkey,
}

/// Another Postern gateway (or a system implementing its inbound contract) allowed to deliver
/// to this gateway's inbox over mutual TLS.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: PeerId,
    pub name: String,
    pub identities: Vec<ClientIdentity>,
    /// The organisations it may deliver on behalf of: a peer cannot claim any other sender.
    pub senders: Vec<OrgId>,
    /// Whether a purpose this gateway does not know is taken as the peer states it (off by
    /// default: inbound deliveries must name a purpose configured here).
    pub purposes_as_given: bool,
}

impl Peer {
    pub fn delivers_for(&self, sender: &OrgId) -> bool {
        self.senders.contains(sender)
    }
}

/// Who a client certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    Organisation(OrgId),
    Peer(PeerId),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Organisation(o) => write!(f, "organisation `{o}`"),
            Principal::Peer(p) => write!(f, "peer gateway `{p}`"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Purpose {
    pub id: PurposeId,
    pub title: String,
    /// The lawful bases that fit this purpose.
    pub lawful_bases: BTreeSet<LawfulBasis>,
    /// A legal gateway that only works between statutory bodies (e.g. s.115 CDA 1998).
    pub statutory_only: bool,
    /// Whether special category data may be shared under this purpose at all.
    pub special_category: bool,
}

#[derive(Debug, Clone)]
pub struct Agreement {
    pub id: AgreementId,
    pub title: String,
    pub parties: BTreeSet<OrgId>,
    pub purposes: BTreeSet<PurposeId>,
    pub lawful_bases: BTreeSet<LawfulBasis>,
    pub max_marking: Rank,
    /// First and last day in force, inclusive (UTC dates).
    pub valid_from: Date,
    pub valid_until: Date,
    /// The working days a request between the parties is answered within, where the agreement
    /// sets its own (otherwise `[requests]`' number).
    pub answer_within_working_days: Option<u32>,
}

impl Agreement {
    pub fn in_force(&self, today: Date) -> bool {
        self.valid_from <= today && today <= self.valid_until
    }

    pub fn binds(&self, a: &OrgId, b: &OrgId) -> bool {
        self.parties.contains(a) && self.parties.contains(b)
    }
}

/// Who claims each client identity, keyed by what a certificate shows.
#[derive(Debug, Clone, Default)]
struct Claims {
    by_fingerprint: HashMap<CertFingerprint, Vec<(CaId, Principal)>>,
    /// Keyed by the lower-cased name.
    by_san: HashMap<String, Vec<(CaId, Principal)>>,
}

impl Claims {
    /// Registers a principal's client identities; returns a message for each identity another
    /// principal already claims (the same fingerprint, or the same name from the same CA).
    fn claim(&mut self, identities: &[ClientIdentity], who: &Principal) -> Vec<String> {
        let mut problems = Vec::new();
        for identity in identities {
            let (other, what) = match identity {
                ClientIdentity::Fingerprint { fingerprint, ca } => {
                    let list = self.by_fingerprint.entry(*fingerprint).or_default();
                    let other = list.iter().find(|(_, p)| p != who).map(|(_, p)| p.clone());
                    list.push((ca.clone(), who.clone()));
                    (other, format!("fingerprint {fingerprint}"))
                }
                ClientIdentity::San { name, ca } => {
                    let list = self.by_san.entry(name.to_ascii_lowercase()).or_default();
                    let other = list
                        .iter()
                        .find(|(c, p)| c == ca && p != who)
                        .map(|(_, p)| p.clone());
                    list.push((ca.clone(), who.clone()));
                    (
                        other,
                        format!("subject alternative name `{name}` from CA `{ca}`"),
                    )
                }
            };
            if let Some(other) = other {
                problems.push(format!("client {what} is also claimed by {other}; a certificate must identify exactly one organisation or peer"));
            }
        }
        problems
    }

    /// Everyone a certificate with this fingerprint and these names, verified up to `anchors`,
    /// is claimed by.
    fn matching<'s>(
        &self,
        fingerprint: &CertFingerprint,
        sans: impl IntoIterator<Item = &'s str>,
        anchors: &[CaId],
        found: &mut BTreeSet<Principal>,
    ) {
        let issued_by = |ca: &CaId| anchors.contains(ca);
        for (ca, p) in self.by_fingerprint.get(fingerprint).into_iter().flatten() {
            if issued_by(ca) {
                found.insert(p.clone());
            }
        }
        for san in sans {
            for (ca, p) in self
                .by_san
                .get(&san.to_ascii_lowercase())
                .into_iter()
                .flatten()
            {
                if issued_by(ca) {
                    found.insert(p.clone());
                }
            }
        }
    }
}

/// Warnings about a principal's identities (not errors: the configuration works, but is weaker
/// than it looks).
fn identity_warnings(identities: &[ClientIdentity]) -> Vec<String> {
    identities
        .iter()
        .filter_map(|i| match i {
            ClientIdentity::San { name, ca } => generic_san(name).map(|why| {
                format!("subject alternative name `{name}` (from CA `{ca}`) is a weak identity: {why}; prefer a name only this party's certificates carry, or its certificate's fingerprint")
            }),
            ClientIdentity::Fingerprint { .. } => None,
        })
        .collect()
}

/// The ids the configuration declares, whether or not their entries are valid.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    pub organisations: BTreeSet<OrgId>,
    pub purposes: BTreeSet<PurposeId>,
}

/// Which entry of the registry an error concerns, so the config layer can point at its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAt {
    Organisation(usize),
    Purpose(usize),
    Agreement(usize),
    Peer(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub at: RegistryAt,
    /// The key within the entry, e.g. `parties`.
    pub field: &'static str,
    pub message: String,
}

/// Result of mapping a presented client certificate to an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identification {
    Unknown,
    One(Principal),
    /// The certificate matches the identities of more than one organisation or peer: refused,
    /// because every request must have exactly one accountable sender.
    Ambiguous(Vec<Principal>),
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub marking: MarkingScheme,
    organisations: BTreeMap<OrgId, Organisation>,
    purposes: BTreeMap<PurposeId, Purpose>,
    agreements: Vec<Agreement>,
    peers: BTreeMap<PeerId, Peer>,
    claims: Claims,
    warnings: Vec<RegistryError>,
    /// The people who sign in to the web pages, by their address in lower case.
    people: BTreeMap<String, Person>,
}

/// Whether `a` looks like an email address: one `@`, something before it, a dotted domain after
/// it, no spaces. Endpoint addresses, people's addresses and sign-in forms are all held to it.
pub fn email_address(a: &str) -> bool {
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

/// What a person may do on the web pages, on behalf of their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Share information and record decisions not to share.
    Share,
    /// Open what arrives for the organisation.
    Receive,
    /// A data protection officer: the transfer log's records of their own organisation
    /// (what it sent or received, its decisions, refusals of its shares) and who looked at them.
    Dpo,
    /// The whole transfer log, every organisation's (e.g. the hub's DPO or Caldicott Guardian).
    Auditor,
    /// The registry's views, explain and reload status: no personal data.
    Admin,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Share,
        Role::Receive,
        Role::Dpo,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Share => "share",
            Role::Receive => "receive",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

/// A person who signs in to the web pages (`people.toml`). They act for their organisation:
/// what they share is the organisation's share, and the envelope's practitioner is them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Lower case; the address sign-in codes go to.
    pub email: String,
    pub name: String,
    /// Their job, recorded as the practitioner's role.
    pub title: String,
    pub org: OrgId,
    pub roles: BTreeSet<Role>,
}

impl Person {
    pub fn may(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl Registry {
    /// Builds the registry and checks what ties its parts together: unique ids, every reference
    /// resolves, no client identity claimed by two organisations, sensible dates. Returns every
    /// problem found.
    pub fn new(
        marking: MarkingScheme,
        organisations: Vec<Organisation>,
        purposes: Vec<Purpose>,
        agreements: Vec<Agreement>,
        peers: Vec<Peer>,
    ) -> Result<Self, Vec<RegistryError>> {
        let declared = Declared {
            organisations: organisations.iter().map(|o| o.id.clone()).collect(),
            purposes: purposes.iter().map(|p| p.id.clone()).collect(),
        };
        Self::new_declared(
            marking,
            organisations,
            purposes,
            agreements,
            peers,
            &declared,
        )
    }

    /// As [`Registry::new`], where references count as resolved if they name anything in
    /// `declared` (which may list entries that failed to load for their own reasons, so that
    /// one mistake is not reported again as a dangling reference everywhere it is used).
    pub fn new_declared(
        marking: MarkingScheme,
        organisations: Vec<Organisation>,
        purposes: Vec<Purpose>,
        agreements: Vec<Agreement>,
        peers: Vec<Peer>,
        declared: &Declared,
    ) -> Result<Self, Vec<RegistryError>> {
        let mut errors = Vec::new();
        let mut err = |at: RegistryAt, field: &'static str, message: String| {
            errors.push(RegistryError { at, field, message });
        };

        let mut orgs = BTreeMap::new();
        let mut claims = Claims::default();
        let mut warnings = Vec::new();
        for (i, org) in organisations.into_iter().enumerate() {
            let at = || RegistryAt::Organisation(i);
            if orgs.contains_key(&org.id) {
                err(
                    at(),
                    "id",
                    format!("organisation `{}` is defined twice", org.id),
                );
                continue;
            }
            for message in claims.claim(&org.identities, &Principal::Organisation(org.id.clone())) {
                err(at(), "identities", message);
            }
            for message in identity_warnings(&org.identities) {
                warnings.push(RegistryError {
                    at: at(),
                    field: "identities",
                    message,
                });
            }
            orgs.insert(org.id.clone(), org);
        }

        let mut peer_map = BTreeMap::new();
        for (i, peer) in peers.into_iter().enumerate() {
            if peer_map.contains_key(&peer.id) {
                err(
                    RegistryAt::Peer(i),
                    "id",
                    format!("peer `{}` is defined twice", peer.id),
                );
                continue;
            }
            if peer.identities.is_empty() {
                err(
                    RegistryAt::Peer(i),
                    "identities",
                    format!("peer `{}` needs at least one client identity", peer.id),
                );
            }
            for message in claims.claim(&peer.identities, &Principal::Peer(peer.id.clone())) {
                err(RegistryAt::Peer(i), "identities", message);
            }
            for message in identity_warnings(&peer.identities) {
                warnings.push(RegistryError {
                    at: RegistryAt::Peer(i),
                    field: "identities",
                    message,
                });
            }
            peer_map.insert(peer.id.clone(), peer);
        }

        let mut purpose_map = BTreeMap::new();
        for (i, p) in purposes.into_iter().enumerate() {
            if p.lawful_bases.is_empty() {
                err(
                    RegistryAt::Purpose(i),
                    "lawful_bases",
                    format!("purpose `{}` must list at least one lawful basis", p.id),
                );
            }
            if purpose_map.contains_key(&p.id) {
                err(
                    RegistryAt::Purpose(i),
                    "id",
                    format!("purpose `{}` is defined twice", p.id),
                );
                continue;
            }
            purpose_map.insert(p.id.clone(), p);
        }

        let mut seen = BTreeSet::new();
        for (i, a) in agreements.iter().enumerate() {
            let at = || RegistryAt::Agreement(i);
            if !seen.insert(a.id.clone()) {
                err(at(), "id", format!("agreement `{}` is defined twice", a.id));
            }
            if a.parties.len() < 2 {
                err(
                    at(),
                    "parties",
                    format!("agreement `{}` must have at least two parties", a.id),
                );
            }
            for party in a
                .parties
                .iter()
                .filter(|p| !orgs.contains_key(*p) && !declared.organisations.contains(*p))
            {
                err(
                    at(),
                    "parties",
                    format!("party `{party}` is not a registered organisation"),
                );
            }
            if a.purposes.is_empty() {
                err(
                    at(),
                    "purposes",
                    format!("agreement `{}` must permit at least one purpose", a.id),
                );
            }
            for purpose in a
                .purposes
                .iter()
                .filter(|p| !purpose_map.contains_key(*p) && !declared.purposes.contains(*p))
            {
                err(
                    at(),
                    "purposes",
                    format!("purpose `{purpose}` is not defined in purposes.toml"),
                );
            }
            if a.lawful_bases.is_empty() {
                err(
                    at(),
                    "lawful_bases",
                    format!("agreement `{}` must permit at least one lawful basis", a.id),
                );
            }
            if a.valid_until < a.valid_from {
                err(
                    at(),
                    "valid_until",
                    format!(
                        "agreement `{}` ends ({}) before it starts ({})",
                        a.id, a.valid_until, a.valid_from
                    ),
                );
            }
        }

        if errors.is_empty() {
            Ok(Registry {
                marking,
                organisations: orgs,
                purposes: purpose_map,
                agreements,
                peers: peer_map,
                claims,
                warnings,
                people: BTreeMap::new(),
            })
        } else {
            Err(errors)
        }
    }

    /// Puts the people in (already checked by the configuration loader: unique addresses,
    /// organisations that exist).
    pub fn with_people(mut self, people: Vec<Person>) -> Self {
        self.people = people
            .into_iter()
            .map(|p| (p.email.to_ascii_lowercase(), p))
            .collect();
        self
    }

    /// The person registered with this address (any case), if any.
    pub fn person(&self, email: &str) -> Option<&Person> {
        self.people.get(&email.trim().to_ascii_lowercase())
    }

    pub fn people(&self) -> impl Iterator<Item = &Person> {
        self.people.values()
    }

    pub fn organisation(&self, id: &OrgId) -> Option<&Organisation> {
        self.organisations.get(id)
    }

    pub fn organisations(&self) -> impl Iterator<Item = &Organisation> {
        self.organisations.values()
    }

    pub fn purpose(&self, id: &PurposeId) -> Option<&Purpose> {
        self.purposes.get(id)
    }

    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes.values()
    }

    pub fn agreements(&self) -> &[Agreement] {
        &self.agreements
    }

    pub fn peer(&self, id: &PeerId) -> Option<&Peer> {
        self.peers.get(id)
    }

    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// What is valid but weaker than it looks (identities many CAs could issue).
    pub fn warnings(&self) -> &[RegistryError] {
        &self.warnings
    }

    /// Maps a verified client certificate (its fingerprint and subject alternative names) to the
    /// organisation or peer gateway it authenticates as. `anchors` are the trusted CAs its chain
    /// was verified up to: an identity bound to another CA does not match.
    pub fn identify<'a>(
        &self,
        fingerprint: &CertFingerprint,
        sans: impl IntoIterator<Item = &'a str>,
        anchors: &[CaId],
    ) -> Identification {
        let mut found: BTreeSet<Principal> = BTreeSet::new();
        self.claims.matching(fingerprint, sans, anchors, &mut found);
        let mut it = found.into_iter();
        match (it.next(), it.next()) {
            (None, _) => Identification::Unknown,
            (Some(one), None) => Identification::One(one),
            (Some(a), Some(b)) => {
                let mut all = vec![a, b];
                all.extend(it);
                Identification::Ambiguous(all)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::marking::tests::demo_scheme;

    fn org(id: &str, identities: Vec<ClientIdentity>) -> Organisation {
        Organisation {
            id: id.parse().unwrap(),
            name: id.to_owned(),
            kind: OrgKind::Voluntary,
            clearance: Rank::Level(0),
            identities,
            sign_in: Default::default(),
            contacts: Default::default(),
            endpoint: None,
        }
    }

    #[test]
    fn fingerprints_parse_in_both_common_forms() {
        let hexs = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        let a: CertFingerprint = format!("sha256:{hexs}").parse().unwrap();
        let b: CertFingerprint = colons.parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), format!("sha256:{hexs}"));
        assert!("sha256:abcd".parse::<CertFingerprint>().is_err());
    }

    fn ca(s: &str) -> CaId {
        s.parse().unwrap()
    }

    fn san(name: &str, from: &str) -> ClientIdentity {
        ClientIdentity::San {
            name: name.into(),
            ca: ca(from),
        }
    }

    fn fp_id(fp: CertFingerprint) -> ClientIdentity {
        ClientIdentity::Fingerprint {
            fingerprint: fp,
            ca: ca("local"),
        }
    }

    #[test]
    fn identification_needs_exactly_one_organisation_or_peer() {
        let fp = CertFingerprint([7; 32]);
        let reg = Registry::new(
            demo_scheme(),
            vec![
                org("a", vec![fp_id(fp)]),
                org("b", vec![san("b.clients.test", "local")]),
            ],
            vec![],
            vec![],
            vec![Peer {
                id: "gw".parse().unwrap(),
                name: "Gateway".into(),
                identities: vec![san("gateway.test", "local")],
                senders: vec!["a".parse().unwrap()],
                purposes_as_given: false,
            }],
        )
        .unwrap();
        let local = [ca("local")];
        let org_ = |s: &str| Identification::One(Principal::Organisation(s.parse().unwrap()));
        assert_eq!(reg.identify(&fp, [], &local), org_("a"));
        assert_eq!(
            reg.identify(&CertFingerprint([0; 32]), ["B.Clients.Test"], &local),
            org_("b")
        );
        assert_eq!(
            reg.identify(&CertFingerprint([0; 32]), ["gateway.test"], &local),
            Identification::One(Principal::Peer("gw".parse().unwrap()))
        );
        assert_eq!(
            reg.identify(&CertFingerprint([0; 32]), ["nobody"], &local),
            Identification::Unknown
        );
        assert!(matches!(
            reg.identify(&fp, ["b.clients.test"], &local),
            Identification::Ambiguous(v) if v.len() == 2
        ));
        assert!(matches!(
            reg.identify(&fp, ["gateway.test"], &local),
            Identification::Ambiguous(v) if v.len() == 2
        ));
    }

    #[test]
    fn an_identity_matches_only_certificates_from_its_own_ca() {
        let fp = CertFingerprint([9; 32]);
        let reg = Registry::new(
            demo_scheme(),
            vec![
                org("a", vec![san("a.clients.test", "local")]),
                org(
                    "b",
                    vec![ClientIdentity::Fingerprint {
                        fingerprint: fp,
                        ca: ca("local"),
                    }],
                ),
                // The same name from another CA is another identity.
                org("c", vec![san("a.clients.test", "westshire")]),
            ],
            vec![],
            vec![],
            vec![],
        )
        .unwrap();
        let org_ = |s: &str| Identification::One(Principal::Organisation(s.parse().unwrap()));
        let other = CertFingerprint([0; 32]);
        assert_eq!(
            reg.identify(&other, ["a.clients.test"], &[ca("local")]),
            org_("a")
        );
        assert_eq!(
            reg.identify(&other, ["a.clients.test"], &[ca("westshire")]),
            org_("c"),
            "a peer's CA issuing one of our names gets its own registration, not ours"
        );
        assert_eq!(
            reg.identify(&other, ["a.clients.test"], &[ca("elsewhere")]),
            Identification::Unknown
        );
        assert_eq!(
            reg.identify(&fp, [], &[ca("westshire")]),
            Identification::Unknown
        );
        assert_eq!(reg.identify(&fp, [], &[ca("local")]), org_("b"));
    }

    #[test]
    fn generic_names_are_warned_about() {
        for weak in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "::1",
            "*.example.org",
            "gateway",
        ] {
            assert!(generic_san(weak).is_some(), "{weak}");
        }
        for fine in [
            "riverside-youth.clients.postern.test",
            "urn:postern:org:x",
            "dsl@school.example",
        ] {
            assert!(generic_san(fine).is_none(), "{fine}");
        }
        let reg = Registry::new(
            demo_scheme(),
            vec![org("a", vec![san("localhost", "local")])],
            vec![],
            vec![],
            vec![],
        )
        .unwrap();
        assert_eq!(reg.warnings().len(), 1);
        assert_eq!(reg.warnings()[0].at, RegistryAt::Organisation(0));
    }

    #[test]
    fn cross_references_are_checked_all_at_once() {
        let d = |s: &str| {
            Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
        };
        let errors = Registry::new(
            demo_scheme(),
            vec![
                org("a", vec![san("x.test", "local")]),
                org("b", vec![san("X.test", "local")]),
            ],
            vec![],
            vec![Agreement {
                id: "dsa".parse().unwrap(),
                title: "t".into(),
                parties: ["a".parse().unwrap(), "ghost".parse().unwrap()].into(),
                purposes: ["nothing".parse().unwrap()].into(),
                lawful_bases: BTreeSet::new(),
                max_marking: Rank::Level(0),
                valid_from: d("2026-01-01"),
                valid_until: d("2025-01-01"),
                answer_within_working_days: None,
            }],
            vec![Peer {
                id: "gw".parse().unwrap(),
                name: "Gateway".into(),
                identities: vec![san("x.test", "local")],
                senders: vec![],
                purposes_as_given: false,
            }],
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| (e.at.clone(), e.field)).collect();
        assert!(fields.contains(&(RegistryAt::Organisation(1), "identities")));
        assert!(
            fields.contains(&(RegistryAt::Peer(0), "identities")),
            "a peer cannot share an organisation's identity"
        );
        assert!(fields.contains(&(RegistryAt::Agreement(0), "parties")));
        assert!(fields.contains(&(RegistryAt::Agreement(0), "purposes")));
        assert!(fields.contains(&(RegistryAt::Agreement(0), "lawful_bases")));
        assert!(fields.contains(&(RegistryAt::Agreement(0), "valid_until")));
    }
}
