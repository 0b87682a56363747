//! Subject references (`nhs:9434765919`, `case:ABC123`) and their keyed hashes.
//!
//! The transfer log must let a DPO find every share about a person without itself holding the
//! person's identifiers in clear. So references are normalised (scheme in lower case, all
//! whitespace removed: the same person however the number was typed), folded to upper case for
//! hashing (a DPO types `abc123` for a case the practitioner wrote `ABC123`), and stored only as
//! HMAC-SHA256 under the deployment's secret key. Without the key the hashes cannot be reversed
//! by trying every NHS number.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectRefError {
    #[error(
        "a subject reference is written `scheme:value`, e.g. `nhs:9434765919` or `case:ABC123`"
    )]
    NoScheme,
    #[error(
        "the scheme before ':' must be 1 to 32 letters, digits, '-' or '_' (e.g. `nhs`, `case`)"
    )]
    BadScheme,
    #[error("the value after ':' is empty")]
    EmptyValue,
    #[error("the value after ':' is longer than 128 characters or contains control characters")]
    BadValue,
    #[error("not a valid NHS number: it must be 10 digits and its check digit must match")]
    BadNhsNumber,
}

/// A normalised subject reference. Deliberately has no `Display` and a redacting `Debug`, so it
/// cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectRef {
    scheme: String,
    value: String,
}

impl fmt::Debug for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectRef({}:<redacted>)", self.scheme)
    }
}

fn nhs_number_valid(digits: &str) -> bool {
    let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 10 || digits.len() != 10 {
        return false;
    }
    let sum: u32 = d[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(digit, weight)| digit * weight)
        .sum();
    match 11 - (sum % 11) {
        11 => d[9] == 0,
        10 => false,
        check => d[9] == check,
    }
}

impl SubjectRef {
    pub fn parse(text: &str) -> Result<Self, SubjectRefError> {
        let (scheme, value) = text.split_once(':').ok_or(SubjectRefError::NoScheme)?;
        let scheme = scheme.trim().to_lowercase();
        if scheme.is_empty()
            || scheme.len() > 32
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(SubjectRefError::BadScheme);
        }
        // NHS numbers are digits only, and are often written 943-476-5919 as well as with spaces.
        let value: String = value
            .chars()
            .filter(|c| !(c.is_whitespace() || scheme == "nhs" && *c == '-'))
            .collect();
        if value.is_empty() {
            return Err(SubjectRefError::EmptyValue);
        }
        if value.chars().count() > 128 || value.chars().any(char::is_control) {
            return Err(SubjectRefError::BadValue);
        }
        if scheme == "nhs" && !nhs_number_valid(&value) {
            return Err(SubjectRefError::BadNhsNumber);
        }
        Ok(SubjectRef { scheme, value })
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The normalised text. Only for sealing into the recipient's envelope and for hashing.
    pub fn expose(&self) -> String {
        format!("{}:{}", self.scheme, self.value)
    }

    /// The keyed hash the log files the reference under: the same whatever the value's case.
    /// The reference sealed for the recipient keeps the case it was given in.
    pub fn hash(&self, key: &SubjectKey) -> SubjectHash {
        key.hash(&format!("{}:{}", self.scheme, self.value.to_uppercase()))
    }

    /// Every keyed hash a person's records may be filed under: the case-folded one, and the
    /// as-given hashes of the reference as typed, in upper and in lower case (records written
    /// before hashes were case-folded).
    pub fn search_hashes(&self, key: &SubjectKey) -> Vec<SubjectHash> {
        let mut out = vec![self.hash(key)];
        for v in [
            self.value.clone(),
            self.value.to_uppercase(),
            self.value.to_lowercase(),
        ] {
            let h = key.hash(&format!("{}:{v}", self.scheme));
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// The keyed hash of the reference exactly as given: how records written before hashes
    /// were case-folded are filed, for subject searches to find them too.
    pub fn hash_as_given(&self, key: &SubjectKey) -> SubjectHash {
        key.hash(&self.expose())
    }
}

/// The deployment's secret key for hashing subject references. Zeroized on drop.
pub struct SubjectKey(Zeroizing<Vec<u8>>);

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the subject hashing key must be at least 32 bytes (it is {0})")]
pub struct ShortKey(pub usize);

impl SubjectKey {
    pub const MIN_LEN: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Result<Self, ShortKey> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < Self::MIN_LEN {
            return Err(ShortKey(bytes.len()));
        }
        Ok(SubjectKey(bytes))
    }

    /// A keyed digest of `data` for another use than subject references (`context` keeps the
    /// uses apart): the same input gives the same bytes for as long as the key is kept.
    pub fn derive(&self, context: &str, data: &str) -> Vec<u8> {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn hash(&self, normalised: &str) -> SubjectHash {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the code free
        // of panics all the same.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return SubjectHash(String::new());
        };
        mac.update(normalised.as_bytes());
        SubjectHash(hex::encode(mac.finalize().into_bytes()))
    }
}

/// HMAC-SHA256 of a normalised subject reference, hex encoded. Safe to store and to show.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SubjectHash(String);

impl SubjectHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SubjectKey {
        SubjectKey::new(vec![b; 32]).unwrap()
    }

    #[test]
    fn the_same_person_hashes_the_same_however_typed() {
        let k = key(1);
        let a = SubjectRef::parse("nhs:9434765919").unwrap().hash(&k);
        let b = SubjectRef::parse(" NHS : 943 476 5919 ").unwrap().hash(&k);
        assert_eq!(a, b);
        assert_eq!(a, SubjectRef::parse("nhs:943-476-5919").unwrap().hash(&k));
        // Case does not matter: a DPO may type a reference in another case than it was shared in.
        assert_eq!(
            SubjectRef::parse("case:Riv-Case-42").unwrap().hash(&k),
            SubjectRef::parse("CASE:riv-case-42").unwrap().hash(&k)
        );
        // Only NHS numbers lose their hyphens: other schemes' references may contain them.
        assert_ne!(
            SubjectRef::parse("case:AB-12").unwrap().hash(&k),
            SubjectRef::parse("case:AB12").unwrap().hash(&k)
        );
        let other = SubjectRef::parse("nhs:9434765870").unwrap().hash(&k);
        assert_ne!(a, other);
        // A different deployment key gives unrelated hashes.
        assert_ne!(
            a,
            SubjectRef::parse("nhs:9434765919").unwrap().hash(&key(2))
        );
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn references_are_validated() {
        use SubjectRefError::*;
        let cases = [
            ("9434765919", NoScheme),
            (":x", BadScheme),
            ("n h s!:1", BadScheme),
            ("case:   ", EmptyValue),
            ("nhs:9434765918", BadNhsNumber),
            ("nhs:943476591", BadNhsNumber),
            ("nhs:94347659１9", BadNhsNumber),
        ];
        for (text, want) in cases {
            assert_eq!(SubjectRef::parse(text), Err(want), "{text}");
        }
        assert!(SubjectRef::parse(&format!("case:{}", "x".repeat(129))).is_err());
        assert_eq!(
            SubjectRef::parse("Case:ABC 123").unwrap().expose(),
            "case:ABC123"
        );
    }

    #[test]
    fn debug_output_never_shows_the_identifier() {
        let r = SubjectRef::parse("nhs:9434765919").unwrap();
        assert!(!format!("{r:?}").contains("9434765919"));
        assert!(SubjectKey::new(vec![0; 31]).is_err());
    }
}
