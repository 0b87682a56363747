//! The policy decision: may this sender share this envelope with every one of its recipients?
//!
//! Pure: the registry, the authenticated sender, the parsed envelope and the time are passed in;
//! nothing is read from anywhere else. Ingest calls [`decide`]; `postern explain` (and tests)
//! call [`evaluate`] to see every rule that was checked. All or nothing: one recipient refused
//! refuses the transfer, because a partial share is a share nobody decided on.
//!
//! The order of checks is the order a practitioner would reason in: first what is true of the
//! share whatever the recipient (marking tier, purpose and basis, special category data,
//! originator's permission, the sender's own standing), then each recipient (registered, standing,
//! clearance) and the agreement that binds the two.

use std::fmt;

use serde::Serialize;
use time::{Date, OffsetDateTime, UtcOffset};

use super::envelope::Envelope;
use super::ids::{AgreementId, OrgId, PurposeId};
use super::lawful::LawfulBasis;
use super::marking::Marking;
use super::registry::{Agreement, Organisation, Purpose, Registry};

/// Every rule the decision applies. The code is stable and appears in refusals and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    SenderRegistered,
    MarkingWithinGateway,
    PurposeKnown,
    LawfulBasisFitsPurpose,
    SpecialCategoryCondition,
    SpecialCategoryPermitted,
    OriginatorPermission,
    StatutoryOnlySender,
    RecipientRegistered,
    StatutoryOnlyRecipient,
    MarkingWithinClearance,
    RecipientHasEndpoint,
    MarkingWithinChannel,
    AgreementExists,
    AgreementInForce,
    PurposeInAgreement,
    LawfulBasisInAgreement,
    MarkingWithinAgreement,
}

impl Rule {
    pub const ALL: &'static [Rule] = &[
        Rule::SenderRegistered,
        Rule::MarkingWithinGateway,
        Rule::PurposeKnown,
        Rule::LawfulBasisFitsPurpose,
        Rule::SpecialCategoryCondition,
        Rule::SpecialCategoryPermitted,
        Rule::OriginatorPermission,
        Rule::StatutoryOnlySender,
        Rule::RecipientRegistered,
        Rule::StatutoryOnlyRecipient,
        Rule::MarkingWithinClearance,
        Rule::RecipientHasEndpoint,
        Rule::MarkingWithinChannel,
        Rule::AgreementExists,
        Rule::AgreementInForce,
        Rule::PurposeInAgreement,
        Rule::LawfulBasisInAgreement,
        Rule::MarkingWithinAgreement,
    ];

    /// The stable code a refusal under this rule carries.
    pub fn refusal_code(self) -> &'static str {
        match self {
            Rule::SenderRegistered => "sender_not_registered",
            Rule::MarkingWithinGateway => "marking_above_gateway",
            Rule::PurposeKnown => "unknown_purpose",
            Rule::LawfulBasisFitsPurpose => "lawful_basis_unfit_for_purpose",
            Rule::SpecialCategoryCondition => "special_category_condition_missing",
            Rule::SpecialCategoryPermitted => "special_category_not_permitted",
            Rule::OriginatorPermission => "originator_permission_missing",
            Rule::StatutoryOnlySender => "statutory_only_sender",
            Rule::RecipientRegistered => "unknown_recipient",
            Rule::StatutoryOnlyRecipient => "statutory_only_recipient",
            Rule::MarkingWithinClearance => "marking_above_clearance",
            Rule::RecipientHasEndpoint => "no_delivery_endpoint",
            Rule::MarkingWithinChannel => "marking_above_channel",
            Rule::AgreementExists => "no_agreement",
            Rule::AgreementInForce => "agreement_not_in_force",
            Rule::PurposeInAgreement => "purpose_not_in_agreement",
            Rule::LawfulBasisInAgreement => "lawful_basis_not_in_agreement",
            Rule::MarkingWithinAgreement => "marking_above_agreement",
        }
    }

    /// What the rule means, for `explain` and the documentation.
    pub fn summary(self) -> &'static str {
        match self {
            Rule::SenderRegistered => "the sender is a registered organisation",
            Rule::MarkingWithinGateway => {
                "the marking is below SECRET (this gateway carries the OFFICIAL tier only)"
            }
            Rule::PurposeKnown => "the purpose is a configured purpose",
            Rule::LawfulBasisFitsPurpose => "the lawful basis is one that fits the purpose",
            Rule::SpecialCategoryCondition => {
                "special category data carries an Article 9 condition"
            }
            Rule::SpecialCategoryPermitted => "the purpose allows special category data",
            Rule::OriginatorPermission => {
                "data originated elsewhere carries the originator's permission reference"
            }
            Rule::StatutoryOnlySender => "a statutory-only purpose is used by a statutory sender",
            Rule::RecipientRegistered => "the recipient is a registered organisation",
            Rule::StatutoryOnlyRecipient => {
                "a statutory-only purpose is used with a statutory recipient"
            }
            Rule::MarkingWithinClearance => "the marking is within the recipient's clearance",
            Rule::RecipientHasEndpoint => "the recipient has a delivery endpoint",
            Rule::MarkingWithinChannel => {
                "the marking is within the ceiling of the recipient's delivery channel"
            }
            Rule::AgreementExists => "sender and recipient are parties to a common agreement",
            Rule::AgreementInForce => "the agreement is in force today",
            Rule::PurposeInAgreement => "the agreement permits the purpose",
            Rule::LawfulBasisInAgreement => "the agreement permits the lawful basis",
            Rule::MarkingWithinAgreement => "the marking is within the agreement's maximum",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.refusal_code())
    }
}

/// One rule as it was applied: to which recipient, under which agreement, with what result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub rule: Rule,
    pub recipient: Option<OrgId>,
    pub agreement: Option<AgreementId>,
    pub passed: bool,
    /// A sentence a person understands. Never contains payload, justification or subject text.
    pub detail: String,
}

/// Which agreement authorises the share with one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authorisation {
    pub recipient: OrgId,
    pub agreement: AgreementId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub rule: Rule,
    pub recipient: Option<OrgId>,
    pub agreement: Option<AgreementId>,
    pub detail: String,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        self.rule.refusal_code()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept(Vec<Authorisation>),
    Refuse(Refusal),
}

#[derive(Debug, Clone)]
pub struct Evaluation {
    pub checks: Vec<Check>,
    pub decision: Decision,
}

/// The decision alone.
pub fn decide(
    registry: &Registry,
    sender: &OrgId,
    envelope: &Envelope,
    now: OffsetDateTime,
) -> Decision {
    evaluate(registry, sender, envelope, now).decision
}

struct Trace<'r> {
    registry: &'r Registry,
    checks: Vec<Check>,
}

impl Trace<'_> {
    /// Records a check; on failure returns the refusal so the caller can stop with `?`.
    fn check(
        &mut self,
        rule: Rule,
        recipient: Option<&OrgId>,
        agreement: Option<&AgreementId>,
        passed: bool,
        detail: impl FnOnce() -> String,
    ) -> Result<(), Refusal> {
        let detail = detail();
        self.checks.push(Check {
            rule,
            recipient: recipient.cloned(),
            agreement: agreement.cloned(),
            passed,
            detail: detail.clone(),
        });
        if passed {
            Ok(())
        } else {
            Err(Refusal {
                rule,
                recipient: recipient.cloned(),
                agreement: agreement.cloned(),
                detail,
            })
        }
    }

    fn name(&self, org: &OrgId) -> String {
        self.registry
            .organisation(org)
            .map_or_else(|| format!("`{org}`"), |o| format!("{} (`{org}`)", o.name))
    }
}

/// The decision with every check that led to it.
pub fn evaluate(
    registry: &Registry,
    sender: &OrgId,
    envelope: &Envelope,
    now: OffsetDateTime,
) -> Evaluation {
    let today = now.to_offset(UtcOffset::UTC).date();
    let mut t = Trace {
        registry,
        checks: Vec::new(),
    };
    let decision = match run(&mut t, sender, envelope, today) {
        Ok(auths) => Decision::Accept(auths),
        Err(refusal) => Decision::Refuse(refusal),
    };
    Evaluation {
        checks: t.checks,
        decision,
    }
}

fn run(
    t: &mut Trace<'_>,
    sender_id: &OrgId,
    e: &Envelope,
    today: Date,
) -> Result<Vec<Authorisation>, Refusal> {
    let reg = t.registry;
    let scheme = &reg.marking;
    let marking = e.marking.normalised(scheme);

    let sender = reg.organisation(sender_id);
    t.check(
        Rule::SenderRegistered,
        None,
        None,
        sender.is_some(),
        || match sender {
            Some(o) => format!(
                "the sender is {} (`{sender_id}`), a registered organisation",
                o.name
            ),
            None => format!("the sender `{sender_id}` is not a registered organisation"),
        },
    )?;
    let Some(sender) = sender else {
        return unreachable_refusal(sender_id);
    };

    t.check(Rule::MarkingWithinGateway, None, None, !e.marking.rank.is_above_official_tier(), || {
        if e.marking.rank.is_above_official_tier() {
            format!("the marking `{}` is {}: this gateway never carries SECRET or TOP SECRET material", e.marking.given, scheme.name(e.marking.rank))
        } else {
            format!("the marking {marking} is within the OFFICIAL tier")
        }
    })?;

    let purpose = purpose_fits(t, &e.purpose, e.lawful_basis, sender_id)?;

    if e.has_special_category() {
        let condition = e.special_category_condition;
        t.check(Rule::SpecialCategoryCondition, None, None, condition.is_some(), || match condition {
            Some(c) => format!("special category data is shared under the Article 9 condition `{c}`"),
            None => "the data includes special category data but no Article 9 condition (`special_category_condition`) is given".to_owned(),
        })?;
        t.check(
            Rule::SpecialCategoryPermitted,
            None,
            None,
            purpose.special_category,
            || {
                if purpose.special_category {
                    format!("purpose `{}` allows special category data", purpose.id)
                } else {
                    format!(
                        "purpose `{}` does not allow special category data to be shared",
                        purpose.id
                    )
                }
            },
        )?;
    }

    let originated_elsewhere = &e.originator != sender_id;
    if originated_elsewhere {
        let has_ref = e.originator_permission_ref.is_some();
        t.check(Rule::OriginatorPermission, None, None, has_ref, || {
            if has_ref {
                format!("the data holding agency `{}` gave permission for onward sharing", e.originator)
            } else {
                format!(
                    "the data originated with `{}`, not the sender: onward sharing needs the originator's permission reference (`originator_permission_ref`)",
                    e.originator
                )
            }
        })?;
    }

    if purpose.statutory_only {
        let ok = sender.kind.is_statutory();
        t.check(Rule::StatutoryOnlySender, None, None, ok, || {
            if ok {
                format!("the sender {} is a statutory body", t_name(sender))
            } else {
                format!(
                    "purpose `{}` ({}) may only be used between statutory bodies, and the sender {} is {}",
                    purpose.id, purpose.title, t_name(sender), sender.kind.label()
                )
            }
        })?;
    }

    let mut authorisations = Vec::with_capacity(e.recipients.len());
    for rid in &e.recipients {
        let recipient = reg.organisation(rid);
        t.check(
            Rule::RecipientRegistered,
            Some(rid),
            None,
            recipient.is_some(),
            || match recipient {
                Some(o) => format!("{} (`{rid}`) is a registered organisation", o.name),
                None => format!("`{rid}` is not a registered organisation"),
            },
        )?;
        let Some(recipient) = recipient else {
            return unreachable_refusal(rid);
        };

        if purpose.statutory_only {
            let ok = recipient.kind.is_statutory();
            t.check(Rule::StatutoryOnlyRecipient, Some(rid), None, ok, || {
                if ok {
                    format!("the recipient {} is a statutory body", t_name(recipient))
                } else {
                    format!(
                        "purpose `{}` ({}) may only be used between statutory bodies, and the recipient {} is {}",
                        purpose.id, purpose.title, t_name(recipient), recipient.kind.label()
                    )
                }
            })?;
        }

        let within = e.marking.rank <= recipient.clearance;
        t.check(
            Rule::MarkingWithinClearance,
            Some(rid),
            None,
            within,
            || {
                format!(
                    "the marking {marking} is {} the clearance of {} ({})",
                    if within { "within" } else { "above" },
                    t_name(recipient),
                    scheme.name(recipient.clearance)
                )
            },
        )?;

        let endpoint = recipient.endpoint.as_ref();
        t.check(
            Rule::RecipientHasEndpoint,
            Some(rid),
            None,
            endpoint.is_some(),
            || match endpoint {
                Some(ep) => format!("{} receives by {}", t_name(recipient), ep.channel.kind()),
                None => format!(
                    "{} has no delivery endpoint configured, so nothing can be delivered to it",
                    t_name(recipient)
                ),
            },
        )?;
        if let Some(ceiling) = endpoint.and_then(|ep| ep.ceiling) {
            let within = e.marking.rank <= ceiling;
            let kind = endpoint.map_or("", |ep| ep.channel.kind());
            t.check(Rule::MarkingWithinChannel, Some(rid), None, within, || {
                format!(
                    "the marking {marking} is {} the ceiling of {}'s {kind} channel ({})",
                    if within { "within" } else { "above" },
                    t_name(recipient),
                    scheme.name(ceiling)
                )
            })?;
        }

        let terms = Terms {
            purpose: &e.purpose,
            lawful_basis: e.lawful_basis,
            marking: Some(&e.marking),
        };
        let agreement = choose_agreement(t, sender_id, recipient, &terms, today)?;
        authorisations.push(Authorisation {
            recipient: rid.clone(),
            agreement,
        });
    }
    Ok(authorisations)
}

/// The purpose, if it is configured and the lawful basis fits it: a share's checks and a
/// request's alike.
fn purpose_fits<'r>(
    t: &mut Trace<'r>,
    id: &PurposeId,
    basis: LawfulBasis,
    who: &OrgId,
) -> Result<&'r Purpose, Refusal> {
    let purpose = t.registry.purpose(id);
    t.check(
        Rule::PurposeKnown,
        None,
        None,
        purpose.is_some(),
        || match purpose {
            Some(p) => format!("purpose `{}` is {}", p.id, p.title),
            None => format!("purpose `{id}` is not a configured purpose"),
        },
    )?;
    let Some(purpose) = purpose else {
        return unreachable_refusal(who);
    };
    let fits = purpose.lawful_bases.contains(&basis);
    t.check(Rule::LawfulBasisFitsPurpose, None, None, fits, || {
        let allowed: Vec<_> = purpose.lawful_bases.iter().map(|b| b.as_str()).collect();
        if fits {
            format!("lawful basis `{basis}` fits purpose `{}`", purpose.id)
        } else {
            format!(
                "lawful basis `{basis}` does not fit purpose `{}`, which allows {}",
                purpose.id,
                allowed.join(", ")
            )
        }
    })?;
    Ok(purpose)
}

fn t_name(o: &Organisation) -> String {
    format!("{} (`{}`)", o.name, o.id)
}

/// Unreachable in practice (the check before it has just refused), but keeps the code free of
/// panics: an absent value becomes a refusal rather than an `unwrap`.
fn unreachable_refusal<T>(who: &OrgId) -> Result<T, Refusal> {
    Err(Refusal {
        rule: Rule::RecipientRegistered,
        recipient: Some(who.clone()),
        agreement: None,
        detail: format!("`{who}` is not registered"),
    })
}

/// What an agreement must permit: a share's purpose, lawful basis and marking, or a request's
/// purpose and basis (what its answer will be marked is not known yet).
struct Terms<'a> {
    purpose: &'a PurposeId,
    lawful_basis: LawfulBasis,
    marking: Option<&'a Marking>,
}

/// Finds an agreement binding sender and recipient that permits these terms. If none does, the
/// refusal reports the agreement that came closest (passed the most checks), so that the person
/// reading it knows which agreement to look at and what it lacks.
fn choose_agreement(
    t: &mut Trace<'_>,
    sender: &OrgId,
    recipient: &Organisation,
    e: &Terms<'_>,
    today: Date,
) -> Result<AgreementId, Refusal> {
    let reg = t.registry;
    let candidates: Vec<&Agreement> = reg
        .agreements()
        .iter()
        .filter(|a| a.binds(sender, &recipient.id))
        .collect();
    let rid = &recipient.id;
    if candidates.is_empty() {
        let sender_name = t.name(sender);
        t.check(Rule::AgreementExists, Some(rid), None, false, || {
            format!(
                "{sender_name} and {} are not parties to any common agreement",
                t_name(recipient)
            )
        })?;
    }

    // Each candidate is tried on a scratch trace; only the winner's checks (or the closest
    // loser's) are kept, so that `explain` tells one coherent story.
    let mut closest: Option<(Vec<Check>, Refusal)> = None;
    for a in candidates {
        let mut scratch = Trace {
            registry: reg,
            checks: Vec::new(),
        };
        match try_agreement(&mut scratch, a, rid, e, today) {
            Ok(()) => {
                t.checks.extend(scratch.checks);
                return Ok(a.id.clone());
            }
            Err(refusal) => {
                if closest
                    .as_ref()
                    .is_none_or(|(c, _)| scratch.checks.len() > c.len())
                {
                    closest = Some((scratch.checks, refusal));
                }
            }
        }
    }
    match closest {
        Some((checks, refusal)) => {
            t.checks.extend(checks);
            Err(refusal)
        }
        None => unreachable_refusal(rid),
    }
}

fn try_agreement(
    t: &mut Trace<'_>,
    a: &Agreement,
    rid: &OrgId,
    e: &Terms<'_>,
    today: Date,
) -> Result<(), Refusal> {
    let scheme = &t.registry.marking;
    let aid = Some(&a.id);
    let rcpt = Some(rid);
    t.check(Rule::AgreementExists, rcpt, aid, true, || {
        format!("agreement `{}` ({}) binds both parties", a.id, a.title)
    })?;
    let in_force = a.in_force(today);
    t.check(Rule::AgreementInForce, rcpt, aid, in_force, || {
        if in_force {
            format!(
                "agreement `{}` is in force ({} to {})",
                a.id, a.valid_from, a.valid_until
            )
        } else if today < a.valid_from {
            format!(
                "agreement `{}` does not come into force until {}",
                a.id, a.valid_from
            )
        } else {
            format!("agreement `{}` expired on {}", a.id, a.valid_until)
        }
    })?;
    let purpose_ok = a.purposes.contains(e.purpose);
    t.check(Rule::PurposeInAgreement, rcpt, aid, purpose_ok, || {
        format!(
            "agreement `{}` {} purpose `{}`",
            a.id,
            if purpose_ok {
                "permits"
            } else {
                "does not permit"
            },
            e.purpose
        )
    })?;
    let basis_ok = a.lawful_bases.contains(&e.lawful_basis);
    t.check(Rule::LawfulBasisInAgreement, rcpt, aid, basis_ok, || {
        format!(
            "agreement `{}` {} lawful basis `{}`",
            a.id,
            if basis_ok {
                "permits"
            } else {
                "does not permit"
            },
            e.lawful_basis
        )
    })?;
    let Some(marking) = e.marking else {
        return Ok(());
    };
    let marking_ok = marking.rank <= a.max_marking;
    t.check(Rule::MarkingWithinAgreement, rcpt, aid, marking_ok, || {
        format!(
            "the marking {} is {} the maximum of agreement `{}` ({})",
            marking.normalised(scheme),
            if marking_ok { "within" } else { "above" },
            a.id,
            scheme.name(a.max_marking)
        )
    })
}

/// Whether `requester` may ask `holder` for information for `purpose` on `lawful_basis`: the
/// same rules as a share between them, with the request as the subject (both registered, the
/// purpose configured and fit for the basis, statutory-only purposes between statutory bodies,
/// and an agreement in force binding both that permits the purpose and the basis), and the
/// requester must be able to receive the answer (it has a delivery endpoint). What the answer
/// will be marked is decided when it is shared. The holder is never the requester: the body's
/// validation refuses that before policy is asked.
pub fn evaluate_request(
    registry: &Registry,
    requester: &OrgId,
    holder: &OrgId,
    purpose: &PurposeId,
    lawful_basis: LawfulBasis,
    now: OffsetDateTime,
) -> Evaluation {
    let today = now.to_offset(UtcOffset::UTC).date();
    let mut t = Trace {
        registry,
        checks: Vec::new(),
    };
    let terms = Terms {
        purpose,
        lawful_basis,
        marking: None,
    };
    let decision = match run_request(&mut t, requester, holder, &terms, today) {
        Ok(auth) => Decision::Accept(vec![auth]),
        Err(refusal) => Decision::Refuse(refusal),
    };
    Evaluation {
        checks: t.checks,
        decision,
    }
}

fn run_request(
    t: &mut Trace<'_>,
    requester_id: &OrgId,
    holder_id: &OrgId,
    terms: &Terms<'_>,
    today: Date,
) -> Result<Authorisation, Refusal> {
    let reg = t.registry;
    let requester = reg.organisation(requester_id);
    t.check(
        Rule::SenderRegistered,
        None,
        None,
        requester.is_some(),
        || match requester {
            Some(o) => format!("the requester is {}, a registered organisation", t_name(o)),
            None => format!("the requester `{requester_id}` is not a registered organisation"),
        },
    )?;
    let Some(requester) = requester else {
        return unreachable_refusal(requester_id);
    };
    // The answer comes back as a share: a request no answer can reach would only start a clock
    // that cannot be met.
    let endpoint = requester.endpoint.as_ref();
    t.check(
        Rule::RecipientHasEndpoint,
        Some(requester_id),
        None,
        endpoint.is_some(),
        || match endpoint {
            Some(ep) => format!(
                "the requester {} receives answers by {}",
                t_name(requester),
                ep.channel.kind()
            ),
            None => format!(
                "the requester {} has no delivery endpoint configured, so no answer could reach it",
                t_name(requester)
            ),
        },
    )?;
    let purpose = purpose_fits(t, terms.purpose, terms.lawful_basis, requester_id)?;
    if purpose.statutory_only {
        let ok = requester.kind.is_statutory();
        t.check(Rule::StatutoryOnlySender, None, None, ok, || {
            format!(
                "purpose `{}` is for statutory bodies only, and the requester {} is {}",
                purpose.id,
                t_name(requester),
                requester.kind.label()
            )
        })?;
    }
    let holder = reg.organisation(holder_id);
    t.check(
        Rule::RecipientRegistered,
        Some(holder_id),
        None,
        holder.is_some(),
        || match holder {
            Some(o) => format!("{} is a registered organisation", t_name(o)),
            None => format!("`{holder_id}` is not a registered organisation"),
        },
    )?;
    let Some(holder) = holder else {
        return unreachable_refusal(holder_id);
    };
    if purpose.statutory_only {
        let ok = holder.kind.is_statutory();
        t.check(
            Rule::StatutoryOnlyRecipient,
            Some(holder_id),
            None,
            ok,
            || {
                format!(
                    "purpose `{}` is for statutory bodies only, and {} is {}",
                    purpose.id,
                    t_name(holder),
                    holder.kind.label()
                )
            },
        )?;
    }
    let agreement = choose_agreement(t, requester_id, holder, terms, today)?;
    Ok(Authorisation {
        recipient: holder_id.clone(),
        agreement,
    })
}

/// What the store knows of the transfer a correction corrects (its `correction_of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrected {
    pub sender: OrgId,
    /// The data holding agency its envelope named (the sender, unless stated).
    pub originator: OrgId,
    /// Every recipient that received it or still may: deliveries not dead.
    pub recipients: Vec<OrgId>,
}

/// Why a correction is not let through to the policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrectionDenied {
    /// No accepted transfer has that id (unknown, or refused or rejected).
    Unknown,
    /// The corrector neither sent it nor originated its data.
    NotPermitted,
}

/// Who a correction goes to: the recipients it names, then every earlier recipient of the
/// transfer it corrects that it does not name (inaccurate data is corrected with *all* who
/// received it, `002` §12.2), never the corrector itself. Only the transfer's sender or its
/// originator may correct it. The recipients returned then go through [`decide`] like any
/// other: a correction is a share, all or nothing.
pub fn correction_recipients(
    corrector: &OrgId,
    named: &[OrgId],
    corrected: Option<&Corrected>,
) -> Result<Vec<OrgId>, CorrectionDenied> {
    let Some(c) = corrected else {
        return Err(CorrectionDenied::Unknown);
    };
    if &c.sender != corrector && &c.originator != corrector {
        return Err(CorrectionDenied::NotPermitted);
    }
    let mut all = named.to_vec();
    for r in &c.recipients {
        if r != corrector && !all.contains(r) {
            all.push(r.clone());
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::envelope::tests::{today, valid_json};
    use crate::domain::envelope::{ParseContext, parse_json};
    use crate::domain::lawful::LawfulBasis;
    use crate::domain::marking::Rank;
    use crate::domain::marking::tests::demo_scheme;
    use crate::domain::registry::{Channel, Endpoint, OrgKind, Purpose, Sector};
    use serde_json::{Value, json};
    use time::macros::{date, datetime};

    fn org(id: &str, kind: OrgKind, clearance: Rank) -> Organisation {
        Organisation {
            id: id.parse().unwrap(),
            name: id.to_uppercase(),
            kind,
            clearance,
            identities: vec![],
            sign_in: Default::default(),
            contacts: Default::default(),
            endpoint: Some(Endpoint {
                channel: Channel::Inbox,
                age_recipients: vec![],
                ceiling: None,
            }),
        }
    }

    #[test]
    fn a_correction_reaches_every_earlier_recipient_and_only_its_sender_or_originator_may_send_it()
    {
        let id = |s: &str| -> OrgId { s.parse().unwrap() };
        let x = Corrected {
            sender: id("northshire-cc"),
            originator: id("northshire-health"),
            recipients: vec![
                id("northshire-police"),
                id("riverside-youth"),
                id("northshire-health"),
            ],
        };
        // The sender names a new recipient and one earlier one: the others are added, once each.
        assert_eq!(
            correction_recipients(
                &id("northshire-cc"),
                &[id("millbrook-academy"), id("riverside-youth")],
                Some(&x)
            ),
            Ok(vec![
                id("millbrook-academy"),
                id("riverside-youth"),
                id("northshire-police"),
                id("northshire-health")
            ])
        );
        // The originator may correct too, and is never sent its own correction.
        assert_eq!(
            correction_recipients(
                &id("northshire-health"),
                &[id("northshire-police")],
                Some(&x)
            ),
            Ok(vec![id("northshire-police"), id("riverside-youth")])
        );
        // A recipient, or anyone else, may not.
        assert_eq!(
            correction_recipients(&id("northshire-police"), &[id("northshire-cc")], Some(&x)),
            Err(CorrectionDenied::NotPermitted)
        );
        assert_eq!(
            correction_recipients(&id("northshire-cc"), &[id("northshire-police")], None),
            Err(CorrectionDenied::Unknown)
        );
    }

    fn set<T: Ord, const N: usize>(items: [T; N]) -> std::collections::BTreeSet<T> {
        items.into_iter().collect()
    }

    /// A small world: a council, the police, a youth club, a school with low clearance, and a
    /// hospital that is a party to nothing.
    fn registry() -> Registry {
        use LawfulBasis::*;
        let stat = |s| OrgKind::Statutory(s);
        let orgs = vec![
            org(
                "northshire-cc",
                stat(Sector::LocalAuthority),
                Rank::Level(1),
            ),
            org("northshire-police", stat(Sector::Police), Rank::Level(1)),
            org("riverside-youth", OrgKind::Voluntary, Rank::Level(1)),
            org("millbrook-academy", stat(Sector::Education), Rank::Level(0)),
            org("lonely-hospital", stat(Sector::Health), Rank::Level(1)),
            Organisation {
                endpoint: None,
                ..org("silent-charity", OrgKind::Voluntary, Rank::Level(1))
            },
            Organisation {
                endpoint: Some(Endpoint {
                    channel: Channel::Email {
                        address: "x@y.example".into(),
                        tls_only: true,
                    },
                    age_recipients: vec![],
                    ceiling: Some(Rank::Level(0)),
                }),
                ..org("email-trust", stat(Sector::Health), Rank::Level(1))
            },
        ];
        let purposes = vec![
            Purpose {
                id: "child-protection-s47".parse().unwrap(),
                title: "Child protection enquiry".into(),
                lawful_bases: set([PublicTask, LegalObligation, VitalInterests]),
                statutory_only: false,
                special_category: true,
            },
            Purpose {
                id: "crime-prevention-s115".parse().unwrap(),
                title: "Crime prevention (s.115)".into(),
                lawful_bases: set([PublicTask]),
                statutory_only: true,
                special_category: false,
            },
            Purpose {
                id: "early-help".parse().unwrap(),
                title: "Early help".into(),
                lawful_bases: set([PublicTask, LegitimateInterests, Consent]),
                statutory_only: false,
                special_category: true,
            },
        ];
        let agreement =
            |id: &str, parties: Vec<&str>, purposes: Vec<&str>, bases, max, from, until| {
                Agreement {
                    id: id.parse().unwrap(),
                    title: id.to_uppercase(),
                    parties: parties.into_iter().map(|p| p.parse().unwrap()).collect(),
                    purposes: purposes.into_iter().map(|p| p.parse().unwrap()).collect(),
                    lawful_bases: bases,
                    max_marking: max,
                    valid_from: from,
                    valid_until: until,
                    answer_within_working_days: None,
                }
            };
        let agreements = vec![
            // Listed first, so that choosing the agreement in force below has to skip it.
            agreement(
                "cc-police-2020",
                vec!["northshire-cc", "northshire-police"],
                vec!["child-protection-s47"],
                set([PublicTask]),
                Rank::Level(1),
                date!(2020 - 01 - 01),
                date!(2020 - 12 - 31),
            ),
            agreement(
                "isp",
                vec![
                    "northshire-cc",
                    "northshire-police",
                    "riverside-youth",
                    "millbrook-academy",
                    "silent-charity",
                    "email-trust",
                ],
                vec![
                    "child-protection-s47",
                    "early-help",
                    "crime-prevention-s115",
                ],
                set([PublicTask, LegalObligation, LegitimateInterests]),
                Rank::Level(1),
                date!(2025 - 04 - 01),
                date!(2028 - 03 - 31),
            ),
            agreement(
                "low-ceiling",
                vec!["northshire-cc", "lonely-hospital"],
                vec!["child-protection-s47"],
                set([PublicTask]),
                Rank::Level(0),
                date!(2025 - 01 - 01),
                date!(2030 - 01 - 01),
            ),
            // A second agreement for the same pair, for another purpose.
            agreement(
                "hospital-early-help",
                vec!["northshire-cc", "lonely-hospital"],
                vec!["early-help"],
                set([PublicTask]),
                Rank::Level(1),
                date!(2025 - 01 - 01),
                date!(2030 - 01 - 01),
            ),
            agreement(
                "expired-pilot",
                vec!["riverside-youth", "lonely-hospital"],
                vec!["early-help"],
                set([LegitimateInterests]),
                Rank::Level(1),
                date!(2023 - 01 - 01),
                date!(2024 - 12 - 31),
            ),
        ];
        Registry::new(demo_scheme(), orgs, purposes, agreements, vec![]).unwrap()
    }

    fn envelope(sender: &str, patch: Value) -> Envelope {
        let mut v = valid_json();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        let sender: OrgId = sender.parse().unwrap();
        let scheme = demo_scheme();
        let cx = ParseContext {
            sender: &sender,
            marking: &scheme,
            today: today(),
        };
        parse_json(v.to_string().as_bytes(), &cx).unwrap()
    }

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    /// A request between two organisations is decided by the same rules as a share between
    /// them, less what only a share has (a marking, an endpoint): as a table.
    #[test]
    fn a_request_is_decided_like_a_share_between_the_two() {
        use LawfulBasis::*;
        let reg = registry();
        // (requester, holder, purpose, basis, refused by, the agreement it names)
        type Row = (
            &'static str,
            &'static str,
            &'static str,
            LawfulBasis,
            Option<Rule>,
            Option<&'static str>,
        );
        let table: [Row; 10] = [
            (
                "northshire-police",
                "northshire-cc",
                "child-protection-s47",
                PublicTask,
                None,
                Some("isp"),
            ),
            (
                "ghost",
                "northshire-cc",
                "child-protection-s47",
                PublicTask,
                Some(Rule::SenderRegistered),
                None,
            ),
            (
                "northshire-police",
                "northshire-cc",
                "no-such",
                PublicTask,
                Some(Rule::PurposeKnown),
                None,
            ),
            (
                "northshire-police",
                "northshire-cc",
                "child-protection-s47",
                Consent,
                Some(Rule::LawfulBasisFitsPurpose),
                None,
            ),
            (
                "riverside-youth",
                "northshire-police",
                "crime-prevention-s115",
                PublicTask,
                Some(Rule::StatutoryOnlySender),
                None,
            ),
            (
                "northshire-police",
                "ghost",
                "child-protection-s47",
                PublicTask,
                Some(Rule::RecipientRegistered),
                None,
            ),
            (
                "northshire-police",
                "lonely-hospital",
                "child-protection-s47",
                PublicTask,
                Some(Rule::AgreementExists),
                None,
            ),
            (
                "riverside-youth",
                "lonely-hospital",
                "early-help",
                LegitimateInterests,
                Some(Rule::AgreementInForce),
                Some("expired-pilot"),
            ),
            // No endpoint is needed to be asked: the silent charity can be asked, if not sent to;
            // but it cannot ask, since no answer could reach it.
            (
                "northshire-cc",
                "silent-charity",
                "early-help",
                PublicTask,
                None,
                Some("isp"),
            ),
            (
                "silent-charity",
                "northshire-cc",
                "early-help",
                PublicTask,
                Some(Rule::RecipientHasEndpoint),
                None,
            ),
        ];
        for (requester, holder, purpose, basis, refused_by, agreement) in table {
            let ev = evaluate_request(
                &reg,
                &requester.parse().unwrap(),
                &holder.parse().unwrap(),
                &purpose.parse().unwrap(),
                basis,
                NOW,
            );
            let why = format!("{requester} asks {holder} for {purpose} ({basis})");
            match (&ev.decision, refused_by) {
                (Decision::Accept(auths), None) => {
                    assert_eq!(auths.len(), 1, "{why}");
                    assert_eq!(auths[0].recipient.as_str(), holder, "{why}");
                    assert_eq!(Some(auths[0].agreement.as_str()), agreement, "{why}");
                }
                (Decision::Refuse(r), Some(rule)) => {
                    assert_eq!(r.rule, rule, "{why}: {}", r.detail);
                    assert_eq!(r.agreement.as_ref().map(|a| a.as_str()), agreement, "{why}");
                }
                (d, _) => panic!("{why}: {d:?}"),
            }
            assert!(
                ev.checks
                    .iter()
                    .all(|c| c.rule != Rule::MarkingWithinAgreement),
                "{why}: a request has no marking to check"
            );
        }
        // The purpose must be in the agreement, and so must the basis.
        let ev = evaluate_request(
            &reg,
            &"northshire-cc".parse().unwrap(),
            &"lonely-hospital".parse().unwrap(),
            &"early-help".parse().unwrap(),
            PublicTask,
            NOW,
        );
        assert!(
            matches!(ev.decision, Decision::Accept(ref a) if a[0].agreement.as_str() == "hospital-early-help")
        );
    }

    /// The table: each rule refuses what it should (with the recipient and agreement it names),
    /// and each has an allowing case nearby.
    #[test]
    fn every_rule_refuses_and_allows_as_it_should() {
        /// Allowed: (recipient, agreement) pairs. Refused: (rule, recipient, agreement named).
        type Allowed = &'static [(&'static str, &'static str)];
        type Refused = (Rule, Option<&'static str>, Option<&'static str>);
        struct Case {
            name: &'static str,
            sender: &'static str,
            patch: Value,
            want: Result<Allowed, Refused>,
        }
        let ok = |pairs: &'static [(&'static str, &'static str)]| Ok(pairs);
        let no = |rule, r: Option<&'static str>, a: Option<&'static str>| Err((rule, r, a));
        let cases = vec![
            Case {
                name: "baseline share is allowed",
                sender: "northshire-cc",
                patch: json!({}),
                want: ok(&[("northshire-police", "isp")]),
            },
            Case {
                name: "unregistered sender",
                sender: "stranger",
                patch: json!({}),
                want: no(Rule::SenderRegistered, None, None),
            },
            Case {
                name: "SECRET is above the gateway",
                sender: "northshire-cc",
                patch: json!({"marking": "SECRET"}),
                want: no(Rule::MarkingWithinGateway, None, None),
            },
            Case {
                name: "TOP SECRET is above the gateway",
                sender: "northshire-cc",
                patch: json!({"marking": "TOP SECRET"}),
                want: no(Rule::MarkingWithinGateway, None, None),
            },
            Case {
                name: "CONFIDENTIAL maps to SECRET by configuration",
                sender: "northshire-cc",
                patch: json!({"marking": "CONFIDENTIAL"}),
                want: no(Rule::MarkingWithinGateway, None, None),
            },
            Case {
                name: "RESTRICTED maps to OFFICIAL-SENSITIVE and is allowed",
                sender: "northshire-cc",
                patch: json!({"marking": "RESTRICTED"}),
                want: ok(&[("northshire-police", "isp")]),
            },
            Case {
                name: "unknown purpose",
                sender: "northshire-cc",
                patch: json!({"purpose": "curiosity"}),
                want: no(Rule::PurposeKnown, None, None),
            },
            Case {
                name: "basis that does not fit the purpose",
                sender: "northshire-cc",
                patch: json!({"lawful_basis": "contract"}),
                want: no(Rule::LawfulBasisFitsPurpose, None, None),
            },
            Case {
                name: "special category without Art 9 condition",
                sender: "northshire-cc",
                patch: json!({"special_category_condition": null}),
                want: no(Rule::SpecialCategoryCondition, None, None),
            },
            Case {
                name: "no special category, no condition needed",
                sender: "northshire-cc",
                patch: json!({"special_category_condition": null, "data_categories": ["personal"]}),
                want: ok(&[("northshire-police", "isp")]),
            },
            Case {
                name: "purpose forbids special category",
                sender: "northshire-cc",
                patch: json!({"purpose": "crime-prevention-s115"}),
                want: no(Rule::SpecialCategoryPermitted, None, None),
            },
            Case {
                name: "originator elsewhere without permission",
                sender: "northshire-cc",
                patch: json!({"originator": "lonely-hospital"}),
                want: no(Rule::OriginatorPermission, None, None),
            },
            Case {
                name: "originator elsewhere with permission",
                sender: "northshire-cc",
                patch: json!({"originator": "lonely-hospital", "originator_permission_ref": "LH-PERM-7"}),
                want: ok(&[("northshire-police", "isp")]),
            },
            Case {
                name: "s.115 from a voluntary sender",
                sender: "riverside-youth",
                patch: json!({"purpose": "crime-prevention-s115", "data_categories": ["personal"], "special_category_condition": null}),
                want: no(Rule::StatutoryOnlySender, None, None),
            },
            Case {
                name: "s.115 to a voluntary recipient",
                sender: "northshire-cc",
                patch: json!({"purpose": "crime-prevention-s115", "data_categories": ["personal"], "special_category_condition": null, "recipients": ["riverside-youth"]}),
                want: no(Rule::StatutoryOnlyRecipient, Some("riverside-youth"), None),
            },
            Case {
                name: "s.115 between statutory bodies",
                sender: "northshire-cc",
                patch: json!({"purpose": "crime-prevention-s115", "data_categories": ["personal", "criminal_offence"], "special_category_condition": null}),
                want: ok(&[("northshire-police", "isp")]),
            },
            Case {
                name: "unknown recipient",
                sender: "northshire-cc",
                patch: json!({"recipients": ["northshire-police", "nobody"]}),
                want: no(Rule::RecipientRegistered, Some("nobody"), None),
            },
            Case {
                name: "marking above the recipient's clearance",
                sender: "northshire-cc",
                patch: json!({"recipients": ["millbrook-academy"]}),
                want: no(
                    Rule::MarkingWithinClearance,
                    Some("millbrook-academy"),
                    None,
                ),
            },
            Case {
                name: "OFFICIAL within the school's clearance",
                sender: "northshire-cc",
                patch: json!({"recipients": ["millbrook-academy"], "marking": "OFFICIAL"}),
                want: ok(&[("millbrook-academy", "isp")]),
            },
            Case {
                name: "a recipient that cannot receive",
                sender: "northshire-cc",
                patch: json!({"recipients": ["silent-charity"]}),
                want: no(Rule::RecipientHasEndpoint, Some("silent-charity"), None),
            },
            Case {
                name: "above the channel's ceiling",
                sender: "northshire-cc",
                patch: json!({"recipients": ["email-trust"]}),
                want: no(Rule::MarkingWithinChannel, Some("email-trust"), None),
            },
            Case {
                name: "within the channel's ceiling",
                sender: "northshire-cc",
                patch: json!({"recipients": ["email-trust"], "marking": "OFFICIAL"}),
                want: ok(&[("email-trust", "isp")]),
            },
            Case {
                name: "a second agreement authorises what the first does not",
                sender: "northshire-cc",
                patch: json!({"recipients": ["lonely-hospital"], "purpose": "early-help"}),
                want: ok(&[("lonely-hospital", "hospital-early-help")]),
            },
            Case {
                name: "no common agreement",
                sender: "northshire-police",
                patch: json!({"recipients": ["lonely-hospital"]}),
                want: no(Rule::AgreementExists, Some("lonely-hospital"), None),
            },
            Case {
                name: "only agreement has expired",
                sender: "riverside-youth",
                patch: json!({"recipients": ["lonely-hospital"], "purpose": "early-help", "lawful_basis": "legitimate_interests"}),
                want: no(
                    Rule::AgreementInForce,
                    Some("lonely-hospital"),
                    Some("expired-pilot"),
                ),
            },
            Case {
                name: "neither agreement permits the purpose (the first of equals is named)",
                sender: "northshire-cc",
                patch: json!({"recipients": ["lonely-hospital"], "purpose": "crime-prevention-s115", "data_categories": ["personal"], "special_category_condition": null}),
                want: no(
                    Rule::PurposeInAgreement,
                    Some("lonely-hospital"),
                    Some("low-ceiling"),
                ),
            },
            Case {
                name: "agreement does not permit the basis",
                sender: "northshire-cc",
                patch: json!({"lawful_basis": "vital_interests"}),
                want: no(
                    Rule::LawfulBasisInAgreement,
                    Some("northshire-police"),
                    Some("isp"),
                ),
            },
            Case {
                name: "marking above the agreement's maximum",
                sender: "northshire-cc",
                patch: json!({"recipients": ["lonely-hospital"]}),
                want: no(
                    Rule::MarkingWithinAgreement,
                    Some("lonely-hospital"),
                    Some("low-ceiling"),
                ),
            },
            Case {
                name: "within the agreement's maximum",
                sender: "northshire-cc",
                patch: json!({"recipients": ["lonely-hospital"], "marking": "OFFICIAL"}),
                want: ok(&[("lonely-hospital", "low-ceiling")]),
            },
            Case {
                name: "all or nothing: one bad recipient refuses all",
                sender: "northshire-cc",
                patch: json!({"recipients": ["northshire-police", "millbrook-academy"]}),
                want: no(
                    Rule::MarkingWithinClearance,
                    Some("millbrook-academy"),
                    None,
                ),
            },
            Case {
                name: "several recipients each authorised",
                sender: "northshire-cc",
                patch: json!({"recipients": ["northshire-police", "millbrook-academy"], "marking": "OFFICIAL"}),
                want: ok(&[("northshire-police", "isp"), ("millbrook-academy", "isp")]),
            },
        ];
        let reg = registry();
        let mut covered = std::collections::HashSet::new();
        for case in cases {
            let sender: OrgId = case.sender.parse().unwrap();
            let e = envelope(case.sender, case.patch.clone());
            let got = decide(&reg, &sender, &e, NOW);
            match (got, case.want) {
                (Decision::Accept(auths), Ok(want)) => {
                    let got: Vec<_> = auths
                        .iter()
                        .map(|a| (a.recipient.as_str(), a.agreement.as_str()))
                        .collect();
                    assert_eq!(got, want, "{}", case.name);
                }
                (Decision::Refuse(r), Err((rule, recipient, agreement))) => {
                    assert_eq!(r.rule, rule, "{}: {}", case.name, r.detail);
                    assert_eq!(
                        r.recipient.as_ref().map(OrgId::as_str),
                        recipient,
                        "{}",
                        case.name
                    );
                    assert_eq!(
                        r.agreement.as_ref().map(AgreementId::as_str),
                        agreement,
                        "{}",
                        case.name
                    );
                    assert!(!r.detail.is_empty());
                    covered.insert(rule);
                }
                (got, want) => panic!("{}: got {got:?}, wanted {want:?}", case.name),
            }
        }
        for rule in Rule::ALL {
            assert!(covered.contains(rule), "no refusing case for {rule:?}");
        }
    }

    #[test]
    fn agreements_are_in_force_on_their_first_and_last_day_only() {
        let reg = registry();
        let sender: OrgId = "riverside-youth".parse().unwrap();
        let e = envelope(
            "riverside-youth",
            json!({"recipients": ["lonely-hospital"], "purpose": "early-help", "lawful_basis": "legitimate_interests"}),
        );
        for (now, allowed) in [
            (datetime!(2022-12-31 23:59 UTC), false),
            (datetime!(2023-01-01 00:00 UTC), true),
            (datetime!(2024-12-31 23:59 UTC), true),
            (datetime!(2025-01-01 00:00 UTC), false),
            // Local time in the UK is ahead of UTC in summer; the decision uses the UTC date.
            (datetime!(2025-01-01 00:30 +01:00), true),
        ] {
            let d = decide(&reg, &sender, &e, now);
            assert_eq!(matches!(d, Decision::Accept(_)), allowed, "{now}: {d:?}");
        }
    }

    #[test]
    fn the_closest_agreement_is_reported_and_explain_shows_the_checks() {
        let reg = registry();
        let sender: OrgId = "northshire-cc".parse().unwrap();
        let e = envelope("northshire-cc", json!({"lawful_basis": "vital_interests"}));
        let ev = evaluate(&reg, &sender, &e, NOW);
        let Decision::Refuse(r) = &ev.decision else {
            panic!("expected refusal")
        };
        assert!(
            r.detail
                .contains("does not permit lawful basis `vital_interests`"),
            "{}",
            r.detail
        );
        let last = ev.checks.last().unwrap();
        assert!(!last.passed);
        assert_eq!(last.rule, Rule::LawfulBasisInAgreement);
        assert!(
            ev.checks
                .iter()
                .any(|c| c.rule == Rule::AgreementInForce && c.passed)
        );
        // Nothing sensitive leaks into the explanation.
        for c in &ev.checks {
            assert!(!c.detail.contains("9434765919") && !c.detail.contains("Disclosure at school"));
        }
    }

    #[test]
    fn refusal_codes_are_unique_and_stable() {
        let codes: std::collections::HashSet<_> =
            Rule::ALL.iter().map(|r| r.refusal_code()).collect();
        assert_eq!(codes.len(), Rule::ALL.len());
        assert_eq!(
            Rule::StatutoryOnlyRecipient.refusal_code(),
            "statutory_only_recipient"
        );
    }
}
