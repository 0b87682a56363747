//! What a person sharing through the web pages may choose: the recipients, purposes, lawful
//! bases and markings that the agreements in force allow for their organisation, so that the
//! pages only ever offer a share the policy would accept. Pure: the pages call these with the
//! registry and today's date, and the policy still decides the share when it is sent (a reload
//! in between may have changed the answer).

use time::Date;

use super::ids::{OrgId, PurposeId};
use super::lawful::{DataCategory, LawfulBasis, SpecialCategoryCondition};
use super::marking::Rank;
use super::registry::{Agreement, Organisation, Purpose, Registry};

fn in_force<'r>(
    reg: &'r Registry,
    a: &'r OrgId,
    b: &'r OrgId,
    today: Date,
) -> impl Iterator<Item = &'r Agreement> {
    reg.agreements()
        .iter()
        .filter(move |ag| ag.in_force(today) && ag.binds(a, b))
}

/// The organisations `sender` may share with: others that can receive and share an agreement in
/// force with it. In name order.
pub fn recipients<'r>(reg: &'r Registry, sender: &OrgId, today: Date) -> Vec<&'r Organisation> {
    let mut out: Vec<&Organisation> = reg
        .organisations()
        .filter(|o| &o.id != sender && o.endpoint.is_some())
        .filter(|o| in_force(reg, sender, &o.id, today).next().is_some())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn statutory(reg: &Registry, id: &OrgId) -> bool {
    reg.organisation(id).is_some_and(|o| o.kind.is_statutory())
}

/// The purposes every one of `to` has an agreement in force with `sender` for (and, for a
/// statutory-only purpose, only when everyone involved is statutory). In title order.
pub fn purposes<'r>(
    reg: &'r Registry,
    sender: &OrgId,
    to: &[OrgId],
    today: Date,
) -> Vec<&'r Purpose> {
    if to.is_empty() {
        return Vec::new();
    }
    let all_statutory = statutory(reg, sender) && to.iter().all(|r| statutory(reg, r));
    let mut out: Vec<&Purpose> = reg
        .purposes()
        .filter(|p| !p.statutory_only || all_statutory)
        .filter(|p| {
            to.iter()
                .all(|r| in_force(reg, sender, r, today).any(|ag| ag.purposes.contains(&p.id)))
        })
        .collect();
    out.sort_by(|a, b| a.title.cmp(&b.title));
    out
}

/// The lawful bases that fit `purpose` and that, for every recipient, an agreement in force
/// permitting the purpose also permits. The likely one first: legitimate interests for a
/// voluntary or private organisation, public task then legal obligation for a public body
/// (the ICO's and the 2024 advice's guidance); the rest in the law's order.
pub fn lawful_bases(
    reg: &Registry,
    sender: &OrgId,
    to: &[OrgId],
    purpose: &PurposeId,
    today: Date,
) -> Vec<LawfulBasis> {
    let Some(p) = reg.purpose(purpose) else {
        return Vec::new();
    };
    let mut out: Vec<LawfulBasis> = LawfulBasis::ALL
        .iter()
        .copied()
        .filter(|b| p.lawful_bases.contains(b))
        .filter(|b| {
            !to.is_empty()
                && to.iter().all(|r| {
                    in_force(reg, sender, r, today)
                        .any(|ag| ag.purposes.contains(purpose) && ag.lawful_bases.contains(b))
                })
        })
        .collect();
    let likely: &[LawfulBasis] = if statutory(reg, sender) {
        &[LawfulBasis::PublicTask, LawfulBasis::LegalObligation]
    } else {
        &[LawfulBasis::LegitimateInterests]
    };
    out.sort_by_key(|b| likely.iter().position(|l| l == b).unwrap_or(likely.len()));
    out
}

/// Whether `purpose` allows special category data (otherwise the pages do not offer it).
pub fn special_category_allowed(reg: &Registry, purpose: &PurposeId) -> bool {
    reg.purpose(purpose).is_some_and(|p| p.special_category)
}

/// The highest marking the share may carry: the lowest of every recipient's clearance, their
/// channel's ceiling, and the best agreement in force for the purpose and basis. `None` when
/// nothing is allowed.
pub fn highest_marking(
    reg: &Registry,
    sender: &OrgId,
    to: &[OrgId],
    purpose: &PurposeId,
    basis: LawfulBasis,
    today: Date,
) -> Option<Rank> {
    let mut ceiling: Option<Rank> = None;
    for r in to {
        let org = reg.organisation(r)?;
        let channel = org.endpoint.as_ref()?.ceiling.unwrap_or(org.clearance);
        let agreement = in_force(reg, sender, r, today)
            .filter(|ag| ag.purposes.contains(purpose) && ag.lawful_bases.contains(&basis))
            .map(|ag| ag.max_marking)
            .max()?;
        let here = org.clearance.min(channel).min(agreement);
        ceiling = Some(ceiling.map_or(here, |c| c.min(here)));
    }
    ceiling.filter(|c| !c.is_above_official_tier())
}

/// The marking levels at or below `ceiling`, lowest first.
pub fn markings(reg: &Registry, ceiling: Rank) -> Vec<String> {
    reg.marking
        .levels()
        .iter()
        .filter(|l| reg.marking.rank_of(l).is_some_and(|r| r <= ceiling))
        .cloned()
        .collect()
}

/// One plain line on when a lawful basis applies (from DOMAIN.md and the ICO's guidance).
pub fn basis_hint(b: LawfulBasis) -> &'static str {
    match b {
        LawfulBasis::PublicTask => {
            "You are a public body doing your official job, such as safeguarding children."
        }
        LawfulBasis::LegalObligation => "A law requires you to share this.",
        LawfulBasis::LegitimateInterests => {
            "Sharing is needed to protect the child, and that outweighs their privacy. Most voluntary organisations use this."
        }
        LawfulBasis::VitalInterests => "Someone's life is at risk and there is no time to ask.",
        LawfulBasis::Consent => {
            "The person agreed to this share, freely, and can take it back. Rarely the right basis for safeguarding."
        }
        LawfulBasis::Contract => "You have a contract with the person that needs this share.",
    }
}

/// The title a person sees for a lawful basis.
pub fn basis_title(b: LawfulBasis) -> &'static str {
    match b {
        LawfulBasis::PublicTask => "Public task",
        LawfulBasis::LegalObligation => "Legal obligation",
        LawfulBasis::LegitimateInterests => "Legitimate interests",
        LawfulBasis::VitalInterests => "Vital interests",
        LawfulBasis::Consent => "Consent",
        LawfulBasis::Contract => "Contract",
    }
}

/// The title and one plain line for a kind of data.
pub fn category_text(c: DataCategory) -> (&'static str, &'static str) {
    match c {
        DataCategory::Personal => (
            "Personal details",
            "Names, addresses, dates of birth, what happened.",
        ),
        DataCategory::SpecialCategory => (
            "Special category information",
            "Health, ethnicity, religion, sex life or sexual orientation.",
        ),
        DataCategory::CriminalOffence => (
            "Criminal offence information",
            "Offences, allegations or convictions.",
        ),
    }
}

/// The title a person sees for an Article 9 condition; safeguarding first.
pub fn conditions() -> Vec<(SpecialCategoryCondition, &'static str)> {
    use SpecialCategoryCondition as C;
    vec![
        (
            C::SafeguardingChildren,
            "Safeguarding of children and of individuals at risk",
        ),
        (C::VitalInterests, "Someone's life is at risk"),
        (C::StatutoryPurposes, "A statutory purpose"),
        (
            C::PreventingUnlawfulActs,
            "Preventing or detecting unlawful acts",
        ),
        (C::HealthSocialCare, "Health or social care"),
        (C::ExplicitConsent, "The person gave explicit consent"),
        (C::LegalClaims, "Legal claims"),
        (
            C::EmploymentSocialSecurity,
            "Employment, social security or social protection law",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::marking::MarkingScheme;
    use crate::domain::registry::{Channel, Endpoint, OrgKind, Sector};

    fn org(id: &str, kind: OrgKind, clearance: Rank) -> Organisation {
        Organisation {
            id: id.parse().unwrap(),
            name: format!("Org {id}"),
            kind,
            clearance,
            identities: Vec::new(),
            sign_in: Default::default(),
            contacts: Default::default(),
            endpoint: Some(Endpoint {
                channel: Channel::Inbox,
                age_recipients: vec!["age1x".into()],
                ceiling: None,
            }),
        }
    }

    fn registry() -> Registry {
        let scheme = MarkingScheme::new(
            &["OFFICIAL".into(), "OFFICIAL-SENSITIVE".into()],
            &[],
            &crate::domain::marking::LEGACY_LABELS
                .iter()
                .map(|l| ((*l).to_owned(), "OFFICIAL".to_owned()))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let stat = OrgKind::Statutory(Sector::LocalAuthority);
        let orgs = vec![
            org("club", OrgKind::Voluntary, Rank::Level(0)),
            org("mash", stat, Rank::Level(1)),
            org("police", OrgKind::Statutory(Sector::Police), Rank::Level(1)),
            org("lonely", stat, Rank::Level(1)),
        ];
        let purpose = |id: &str, statutory_only: bool| Purpose {
            id: id.parse().unwrap(),
            title: format!("Purpose {id}"),
            lawful_bases: [
                LawfulBasis::PublicTask,
                LawfulBasis::LegitimateInterests,
                LawfulBasis::Consent,
            ]
            .into(),
            statutory_only,
            special_category: !statutory_only,
        };
        let d = |s: &str| {
            Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
        };
        let agreement = |id: &str, parties: &[&str], purposes: &[&str], until: &str| Agreement {
            id: id.parse().unwrap(),
            title: id.into(),
            parties: parties.iter().map(|p| p.parse().unwrap()).collect(),
            purposes: purposes.iter().map(|p| p.parse().unwrap()).collect(),
            lawful_bases: [LawfulBasis::PublicTask, LawfulBasis::LegitimateInterests].into(),
            max_marking: Rank::Level(1),
            valid_from: d("2025-01-01"),
            valid_until: d(until),
            answer_within_working_days: None,
        };
        Registry::new(
            scheme,
            orgs,
            vec![purpose("referral", false), purpose("s115", true)],
            vec![
                agreement(
                    "isp",
                    &["club", "mash", "police"],
                    &["referral"],
                    "2030-01-01",
                ),
                agreement("dsa", &["mash", "police"], &["s115"], "2030-01-01"),
                agreement("ended", &["club", "lonely"], &["referral"], "2025-06-01"),
            ],
            Vec::new(),
        )
        .unwrap()
    }

    fn ids(v: &[&str]) -> Vec<OrgId> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn only_what_an_agreement_in_force_allows_is_offered() {
        let reg = registry();
        let today = Date::from_calendar_date(2026, time::Month::December, 2).unwrap();
        let club: OrgId = "club".parse().unwrap();
        let names: Vec<&str> = recipients(&reg, &club, today)
            .iter()
            .map(|o| o.id.as_str())
            .collect();
        // `lonely`'s agreement has ended.
        assert_eq!(names, ["mash", "police"]);
        // A statutory-only purpose is never offered to a voluntary sender.
        let p: Vec<&str> = purposes(&reg, &club, &ids(&["mash"]), today)
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(p, ["referral"]);
        let mash: OrgId = "mash".parse().unwrap();
        let p: Vec<&str> = purposes(&reg, &mash, &ids(&["police"]), today)
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(p, ["referral", "s115"]);
        assert!(purposes(&reg, &club, &[], today).is_empty());
        // Consent fits the purpose but no agreement permits it; the likely basis comes first.
        let referral: PurposeId = "referral".parse().unwrap();
        assert_eq!(
            lawful_bases(&reg, &club, &ids(&["mash"]), &referral, today),
            [LawfulBasis::LegitimateInterests, LawfulBasis::PublicTask]
        );
        assert_eq!(
            lawful_bases(&reg, &mash, &ids(&["police"]), &referral, today),
            [LawfulBasis::PublicTask, LawfulBasis::LegitimateInterests]
        );
        // The club's clearance is OFFICIAL: a share from the MASH to the club and the police
        // may carry OFFICIAL only; to the police alone, OFFICIAL-SENSITIVE.
        let to_both = highest_marking(
            &reg,
            &mash,
            &ids(&["club", "police"]),
            &referral,
            LawfulBasis::PublicTask,
            today,
        )
        .unwrap();
        assert_eq!(markings(&reg, to_both), ["OFFICIAL"]);
        let to_police = highest_marking(
            &reg,
            &mash,
            &ids(&["police"]),
            &referral,
            LawfulBasis::PublicTask,
            today,
        )
        .unwrap();
        assert_eq!(
            markings(&reg, to_police),
            ["OFFICIAL", "OFFICIAL-SENSITIVE"]
        );
        assert_eq!(
            highest_marking(
                &reg,
                &club,
                &ids(&["lonely"]),
                &referral,
                LawfulBasis::PublicTask,
                today
            ),
            None
        );
    }
}
