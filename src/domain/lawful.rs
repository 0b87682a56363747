//! The legal vocabulary a share is recorded in: UK GDPR Article 6 lawful bases, Article 9
//! conditions for special category data (with the DPA 2018 Schedule 1 conditions safeguarding
//! relies on), and the categories of data disclosed. Fixed by law, so fixed in code; which of
//! them a purpose or an agreement permits is configuration.

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The names, in order (the API's contract lists them).
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the snake_case name used in envelopes and configuration.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted names, for error messages.
            pub fn expected() -> String {
                [$($text),+].join(", ")
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": Self::NAMES })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// UK GDPR Article 6(1).
    LawfulBasis {
        /// 6(1)(a)
        Consent = "consent",
        /// 6(1)(b)
        Contract = "contract",
        /// 6(1)(c)
        LegalObligation = "legal_obligation",
        /// 6(1)(d)
        VitalInterests = "vital_interests",
        /// 6(1)(e): what public bodies usually rely on.
        PublicTask = "public_task",
        /// 6(1)(f): what voluntary organisations usually rely on.
        LegitimateInterests = "legitimate_interests",
    }
);

vocabulary!(
    /// UK GDPR Article 9(2) conditions, with the DPA 2018 Schedule 1 conditions used in safeguarding.
    SpecialCategoryCondition {
        /// 9(2)(a)
        ExplicitConsent = "explicit_consent",
        /// 9(2)(b) with Sch 1 para 1
        EmploymentSocialSecurity = "employment_social_security",
        /// 9(2)(c)
        VitalInterests = "vital_interests",
        /// 9(2)(f)
        LegalClaims = "legal_claims",
        /// 9(2)(g) with Sch 1 para 6
        StatutoryPurposes = "statutory_purposes",
        /// 9(2)(g) with Sch 1 para 10
        PreventingUnlawfulActs = "preventing_unlawful_acts",
        /// 9(2)(g) with Sch 1 para 18: safeguarding of children and individuals at risk
        SafeguardingChildren = "safeguarding_children",
        /// 9(2)(h) with Sch 1 para 2
        HealthSocialCare = "health_social_care",
    }
);

vocabulary!(
    /// What kinds of data a disclosure contains.
    DataCategory {
        Personal = "personal",
        /// UK GDPR Article 9 data: health, ethnicity, religion, sex life, ...
        SpecialCategory = "special_category",
        /// UK GDPR Article 10 / DPA 2018 s.11(2)
        CriminalOffence = "criminal_offence",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in LawfulBasis::ALL {
            assert_eq!(LawfulBasis::parse(b.as_str()), Some(*b));
        }
        assert_eq!(LawfulBasis::parse("Public Task"), None);
        assert!(LawfulBasis::expected().contains("public_task"));
    }
}
