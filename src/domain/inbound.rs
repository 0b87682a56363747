//! Inbound admission: what a receiving gateway checks before it holds a delivery a peer gateway
//! brings (`POST /v1/inbound`). The sending gateway decided under its own registry; this one is
//! the last place that can refuse what its organisation must not hold, so the delivery's clear
//! description is held to this gateway's rules too: the peer may speak for the sender, the
//! recipient is served here, the marking parses under this gateway's scheme and is within the
//! OFFICIAL tier, the recipient's clearance and its channel's ceiling, the purpose is known here
//! (unless the peer's registration takes purposes as given), and the retention date is a date in
//! the future within the configured maximum.
//!
//! Pure, like [`super::policy`]: the registry, the description and today's date are passed in.

use serde::Serialize;
use time::{Date, Duration};

use super::ids::{OrgId, PeerId};
use super::marking::Marking;
use super::registry::{Channel, Registry};

/// What a peer says about a delivery, in clear.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub peer: &'a PeerId,
    pub sender: &'a OrgId,
    pub recipient: &'a OrgId,
    pub purpose: &'a str,
    pub marking: &'a str,
    pub retain_until: &'a str,
}

/// Every rule inbound admission applies, in the order it applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundRule {
    PeerRegistered,
    SenderPermitted,
    RecipientHere,
    MarkingRecognised,
    MarkingWithinGateway,
    MarkingWithinClearance,
    MarkingWithinChannel,
    PurposeKnown,
    RetentionValid,
}

impl InboundRule {
    /// The field of the inbound contract at fault.
    pub fn field(self) -> Option<&'static str> {
        match self {
            InboundRule::PeerRegistered => None,
            InboundRule::SenderPermitted => Some("meta.sender"),
            InboundRule::RecipientHere => Some("meta.recipient"),
            InboundRule::MarkingRecognised
            | InboundRule::MarkingWithinGateway
            | InboundRule::MarkingWithinClearance
            | InboundRule::MarkingWithinChannel => Some("meta.marking"),
            InboundRule::PurposeKnown => Some("meta.purpose"),
            InboundRule::RetentionValid => Some("meta.retain_until"),
        }
    }

    /// The rule's name as the transfer log records it.
    pub fn name(self) -> &'static str {
        match self {
            InboundRule::PeerRegistered => "peer_registered",
            InboundRule::SenderPermitted => "sender_permitted",
            InboundRule::RecipientHere => "recipient_here",
            InboundRule::MarkingRecognised => "marking_recognised",
            InboundRule::MarkingWithinGateway => "marking_within_gateway",
            InboundRule::MarkingWithinClearance => "marking_within_clearance",
            InboundRule::MarkingWithinChannel => "marking_within_channel",
            InboundRule::PurposeKnown => "purpose_known",
            InboundRule::RetentionValid => "retention_valid",
        }
    }
}

/// Why a delivery is not held. `detail` is a sentence for the sending gateway's operators; it
/// repeats nothing but ids, markings and dates (never content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRefusal {
    pub rule: InboundRule,
    pub detail: String,
}

/// A delivery this gateway may hold: its marking on this gateway's scale, and the last day its
/// recipient may keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub marking: Marking,
    pub retain_until: Date,
}

fn refuse(rule: InboundRule, detail: String) -> InboundRefusal {
    InboundRefusal { rule, detail }
}

/// Decides whether this gateway holds a delivery. `max_retain_days`: how far ahead
/// `retain_until` may be.
pub fn admit(
    registry: &Registry,
    offer: &Offer<'_>,
    today: Date,
    max_retain_days: u32,
) -> Result<Admitted, InboundRefusal> {
    let Some(peer) = registry.peer(offer.peer) else {
        return Err(refuse(
            InboundRule::PeerRegistered,
            "Your certificate no longer identifies a registered peer gateway.".into(),
        ));
    };
    if !peer.delivers_for(offer.sender) {
        return Err(refuse(
            InboundRule::SenderPermitted,
            format!(
                "Your gateway is not registered to deliver for `{}`; ask this gateway's operators to add it to your peer entry's `senders`.",
                offer.sender
            ),
        ));
    }
    // Only organisations this gateway keeps an inbox for: its `inbox` organisations, and those
    // reached over https (whose inbound endpoint is this one). An email recipient, or one that
    // cannot receive at all, would get an inbox nobody reads.
    let recipient = registry.organisation(offer.recipient);
    let endpoint = recipient.and_then(|o| o.endpoint.as_ref()).filter(|e| {
        matches!(
            e.channel,
            Channel::Inbox | Channel::Portal { .. } | Channel::Https { .. }
        )
    });
    let (Some(recipient), Some(endpoint)) = (recipient, endpoint) else {
        return Err(refuse(
            InboundRule::RecipientHere,
            format!(
                "`{}` does not receive through this gateway's inbox.",
                offer.recipient
            ),
        ));
    };
    let scheme = &registry.marking;
    let marking = scheme.parse(offer.marking).map_err(|e| {
        refuse(
            InboundRule::MarkingRecognised,
            format!("`marking` is not a protective marking under this gateway's scheme: {e}."),
        )
    })?;
    if marking.rank.is_above_official_tier() {
        return Err(refuse(
            InboundRule::MarkingWithinGateway,
            format!(
                "`{}` is above the OFFICIAL tier; this gateway never holds SECRET or TOP SECRET material.",
                marking.given
            ),
        ));
    }
    if marking.rank > recipient.clearance {
        return Err(refuse(
            InboundRule::MarkingWithinClearance,
            format!(
                "`{}` is above the clearance of `{}` here ({}).",
                marking.given,
                recipient.id,
                scheme.name(recipient.clearance)
            ),
        ));
    }
    if let Some(ceiling) = endpoint.ceiling
        && marking.rank > ceiling
    {
        return Err(refuse(
            InboundRule::MarkingWithinChannel,
            format!(
                "`{}` is above the ceiling of `{}`'s channel here ({}).",
                marking.given,
                recipient.id,
                scheme.name(ceiling)
            ),
        ));
    }
    let purpose_known = offer
        .purpose
        .parse()
        .ok()
        .is_some_and(|p| registry.purpose(&p).is_some());
    if !purpose_known && !peer.purposes_as_given {
        return Err(refuse(
            InboundRule::PurposeKnown,
            format!(
                "`{}` is not a purpose configured at this gateway; ask its operators to add it, or to register your gateway with `purposes_as_given = true`.",
                offer.purpose
            ),
        ));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let Ok(retain_until) = Date::parse(offer.retain_until.trim(), format) else {
        return Err(refuse(
            InboundRule::RetentionValid,
            "`retain_until` must be a date, YYYY-MM-DD.".into(),
        ));
    };
    if retain_until <= today {
        return Err(refuse(
            InboundRule::RetentionValid,
            format!(
                "`retain_until` ({retain_until}) is not in the future: the recipient would have to destroy it on arrival."
            ),
        ));
    }
    let latest = today.saturating_add(Duration::days(i64::from(max_retain_days)));
    if retain_until > latest {
        return Err(refuse(
            InboundRule::RetentionValid,
            format!(
                "`retain_until` ({retain_until}) is more than {max_retain_days} days ahead, the longest this gateway holds a delivery for."
            ),
        ));
    }
    Ok(Admitted {
        marking,
        retain_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::marking::Rank;
    use crate::domain::marking::tests::demo_scheme;
    use crate::domain::registry::{
        ClientIdentity, Endpoint, OrgKind, Organisation, Peer, Purpose, Registry,
    };

    fn registry(purposes_as_given: bool) -> Registry {
        let org =
            |id: &str, clearance: Rank, ceiling: Option<Rank>, channel: Channel| Organisation {
                id: id.parse().unwrap(),
                name: id.into(),
                kind: OrgKind::Voluntary,
                clearance,
                identities: vec![],
                sign_in: Default::default(),
                contacts: Default::default(),
                endpoint: Some(Endpoint {
                    channel,
                    age_recipients: vec![],
                    ceiling,
                }),
            };
        Registry::new(
            demo_scheme(),
            vec![
                org("youth", Rank::Level(0), None, Channel::Inbox),
                org("mash", Rank::Level(1), Some(Rank::Level(0)), Channel::Inbox),
                org(
                    "council",
                    Rank::Level(1),
                    None,
                    Channel::Email {
                        address: "a@b.example".into(),
                        tls_only: false,
                    },
                ),
            ],
            vec![Purpose {
                id: "early-help".parse().unwrap(),
                title: "Early help".into(),
                lawful_bases: [crate::domain::lawful::LawfulBasis::PublicTask].into(),
                statutory_only: false,
                special_category: true,
            }],
            vec![],
            vec![Peer {
                id: "gw".parse().unwrap(),
                name: "Gateway".into(),
                identities: vec![ClientIdentity::San {
                    name: "gw.example".into(),
                    ca: "w".parse().unwrap(),
                }],
                senders: vec!["west-cc".parse().unwrap()],
                purposes_as_given,
            }],
        )
        .unwrap()
    }

    /// (recipient, marking, purpose, retain_until).
    type Fields<'a> = (&'a str, &'a str, &'a str, &'a str);

    /// An offer of `f` against a fixed day.
    fn check(reg: &Registry, f: Fields<'_>) -> Result<(), InboundRule> {
        let (peer, sender) = ("gw".parse().unwrap(), "west-cc".parse().unwrap());
        let recipient = f.0.parse().unwrap();
        let today = Date::from_calendar_date(2026, time::Month::December, 2).unwrap();
        admit(
            reg,
            &Offer {
                peer: &peer,
                sender: &sender,
                recipient: &recipient,
                purpose: f.2,
                marking: f.1,
                retain_until: f.3,
            },
            today,
            365,
        )
        .map(|_| ())
        .map_err(|r| r.rule)
    }

    #[test]
    fn every_rule_refuses_what_it_is_about_and_nothing_else() {
        let reg = registry(false);
        let ok = ("youth", "OFFICIAL", "early-help", "2027-01-01");
        assert_eq!(check(&reg, ok), Ok(()));
        let cases: &[(Fields<'_>, InboundRule)] = &[
            (
                ("council", "OFFICIAL", "early-help", "2027-01-01"),
                InboundRule::RecipientHere,
            ),
            (
                ("nobody", "OFFICIAL", "early-help", "2027-01-01"),
                InboundRule::RecipientHere,
            ),
            (
                ("youth", "", "early-help", "2027-01-01"),
                InboundRule::MarkingRecognised,
            ),
            (
                ("youth", "HUSH", "early-help", "2027-01-01"),
                InboundRule::MarkingRecognised,
            ),
            (
                ("youth", "TOP SECRET", "early-help", "2027-01-01"),
                InboundRule::MarkingWithinGateway,
            ),
            (
                ("youth", "SECRET", "early-help", "2027-01-01"),
                InboundRule::MarkingWithinGateway,
            ),
            (
                ("youth", "OFFICIAL-SENSITIVE", "early-help", "2027-01-01"),
                InboundRule::MarkingWithinClearance,
            ),
            (
                ("mash", "OFFICIAL-SENSITIVE", "early-help", "2027-01-01"),
                InboundRule::MarkingWithinChannel,
            ),
            (
                ("youth", "OFFICIAL", "astrology", "2027-01-01"),
                InboundRule::PurposeKnown,
            ),
            (
                ("youth", "OFFICIAL", "early-help", "2026-12-02"),
                InboundRule::RetentionValid,
            ),
            (
                ("youth", "OFFICIAL", "early-help", "2028-01-01"),
                InboundRule::RetentionValid,
            ),
            (
                ("youth", "OFFICIAL", "early-help", "soon"),
                InboundRule::RetentionValid,
            ),
        ];
        for (offer, rule) in cases {
            assert_eq!(check(&reg, *offer), Err(*rule), "{offer:?}");
        }
        assert_eq!(
            check(
                &registry(true),
                ("youth", "OFFICIAL", "astrology", "2027-01-01")
            ),
            Ok(()),
            "a peer registered to have its purposes taken as given"
        );
    }

    #[test]
    fn a_peer_speaks_only_for_its_senders() {
        let reg = registry(false);
        let peer = "gw".parse().unwrap();
        let other = "east-cc".parse().unwrap();
        let recipient = "youth".parse().unwrap();
        let today = Date::from_calendar_date(2026, time::Month::December, 2).unwrap();
        let offer = Offer {
            peer: &peer,
            sender: &other,
            recipient: &recipient,
            purpose: "early-help",
            marking: "OFFICIAL",
            retain_until: "2027-01-01",
        };
        let refused = admit(&reg, &offer, today, 365).unwrap_err();
        assert_eq!(refused.rule, InboundRule::SenderPermitted);
        // (its status and code: `ingest::inbound`'s tests)
        assert_eq!(refused.rule.field(), Some("meta.sender"));
    }
}
