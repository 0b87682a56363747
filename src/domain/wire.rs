//! How values the code keeps as text or numbers look on the wire, for the API's contract
//! (`ingest::openapi`): each type here is only a JSON schema, named in a field's
//! `#[schemars(with = ...)]`. Pure data, like the rest of the domain.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

macro_rules! wire {
    ($(#[$doc:meta])* $name:ident, $schema:tt) => {
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

wire!(
    /// An instant, in RFC 3339.
    DateTime,
    { "type": "string", "format": "date-time" }
);
wire!(
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    { "type": "string", "format": "date" }
);
wire!(
    /// A UUID (transfer and decision ids).
    Uuid,
    { "type": "string", "format": "uuid" }
);
wire!(
    /// A SHA-256 digest in lower-case hex.
    Sha256Hex,
    { "type": "string", "pattern": "^[0-9a-f]{64}$" }
);
wire!(
    /// A certificate's fingerprint, `sha256:` and the hex digest; empty where no certificate was
    /// presented (a person signed in to the web pages).
    Fingerprint,
    { "type": "string", "pattern": "^(sha256:[0-9a-f]{64})?$" }
);
wire!(
    /// A byte count.
    Size,
    { "type": "integer", "format": "int64", "minimum": 0 }
);
wire!(
    /// Binary data in base64 (standard alphabet, with padding).
    Base64,
    { "type": "string", "contentEncoding": "base64" }
);
