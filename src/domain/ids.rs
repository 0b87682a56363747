//! Identifier newtypes. Every id that crosses a module boundary is one of these, never a bare
//! string, so an agreement id cannot be passed where an organisation id is meant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid configured id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid id: use 1 to 64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
)]
pub struct InvalidId(pub String);

fn valid_slug(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                if valid_slug(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidId(s.to_owned()))
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // Every slug id has the same alphabet, so one schema (`Id`) serves them all.
        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                "Id".into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                slug_schema()
            }
        }
    };
}

/// What [`valid_slug`] accepts, as a JSON schema.
fn slug_schema() -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": SLUG_PATTERN,
        "maxLength": 64,
    })
}

/// What `valid_slug` accepts, as a regular expression (for the API's contract).
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";

slug_id!(
    /// An organisation (agency, party) registered with the gateway, e.g. `northshire-police`.
    OrgId
);
slug_id!(
    /// A data sharing agreement or information sharing protocol.
    AgreementId
);
slug_id!(
    /// A configured purpose of sharing, e.g. `child-protection-s47`.
    PurposeId
);
slug_id!(
    /// A peer gateway allowed to deliver to this gateway's inbox.
    PeerId
);
/// How the inbox names the way in of this gateway's own deliveries (where a peer's would name
/// the peer): no peer may have it as its id, or its deliveries would pass for local ones.
pub const LOCAL_VIA: &str = "local";

slug_id!(
    /// A certificate authority this gateway trusts for client certificates (an entry of
    /// `tls.client_cas`), named so that each identity can say which CA may issue it.
    CaId
);

/// An id that is a UUID v7: time-ordered, so ids sort by arrival. Generated at the edge (the
/// domain has no clock or randomness) and passed in.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            /// The id as a number (a compact key for large in-memory sets).
            pub fn as_u128(&self) -> u128 {
                self.0.as_u128()
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
                schemars::json_schema!({ "type": "string", "format": "uuid" })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// One submission to the gateway, accepted or refused (a decision not to share has one too).
    TransferId
);

uuid_id!(
    /// One request for information, made or refused: the id both organisations follow it by,
    /// and the one an answering share or decision names.
    RequestId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_the_documented_alphabet_only() {
        for ok in ["a", "northshire-police", "org_1.x", "9lives"] {
            assert!(ok.parse::<OrgId>().is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-x", "Upper", "has space", "x/y", long.as_str()] {
            assert!(bad.parse::<OrgId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn transfer_ids_round_trip_through_text() {
        let id = TransferId::from_uuid(uuid::Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0001,
        ));
        assert_eq!(id.to_string().parse::<TransferId>().ok(), Some(id));
    }
}
