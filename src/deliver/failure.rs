//! Why a delivery attempt failed, typed: the worker's outcome carries a [`Cause`] inside
//! temporary or permanent (as stalwart's queue does), which the transfer log records and the
//! metrics count by; the sentence for a person is made once, from the cause and what failed.

pub use crate::domain::delivery::FailureCause as Cause;

/// A failed attempt: its cause, and the sentence a person reads (the SMTP reply, the HTTP
/// status, the error), made once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub cause: Cause,
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// An error and its sources as one sentence, each source once: libraries often repeat their
/// source's text in their own message, and a person should not read it twice.
pub fn sentence(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let next = err.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = err.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error, &'static str);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::other("connection refused");
        assert_eq!(
            sentence(&Outer(io(), "connect failed: connection refused")),
            "connect failed: connection refused"
        );
        assert_eq!(
            sentence(&Outer(io(), "connect failed")),
            "connect failed: connection refused"
        );
    }

    #[test]
    fn every_cause_has_its_own_label() {
        let labels: std::collections::HashSet<_> = Cause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), Cause::ALL.len());
        for c in Cause::ALL {
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(serde_json::Value::String(c.as_str().to_owned()))
            );
        }
    }
}
