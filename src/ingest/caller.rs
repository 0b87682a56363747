//! Extractors that say which kind of caller a route is for. The TLS layer has already mapped
//! the client certificate to exactly one organisation or peer gateway; these refuse the other
//! kind with a problem answer (an organisation cannot post to the inbound endpoint, a peer
//! gateway cannot submit transfers or read an inbox).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::problem::{Problem, ProblemCode};
use crate::domain::ids::{OrgId, PeerId};
use crate::domain::registry::{CertFingerprint, Principal};
use crate::tls::server::Caller;

/// An organisation calling the API.
#[derive(Debug, Clone)]
pub struct OrgCaller {
    pub org: OrgId,
    pub fingerprint: CertFingerprint,
}

/// A peer gateway calling the inbound endpoint.
#[derive(Debug, Clone)]
pub struct PeerCaller {
    pub peer: PeerId,
    pub fingerprint: CertFingerprint,
}

// Boxed: a rejection is rare, and the Ok path should stay small.
fn caller(parts: &Parts) -> Result<&Caller, Box<Response>> {
    // Every connection carries a Caller; its absence would be a wiring fault, never a client's.
    parts
        .extensions
        .get::<Caller>()
        .ok_or_else(|| Box::new(Problem::internal().into_response()))
}

impl<S: Send + Sync> FromRequestParts<S> for OrgCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let c = caller(parts).map_err(|b| *b)?;
        match &c.principal {
            Principal::Organisation(org) => Ok(OrgCaller { org: org.clone(), fingerprint: c.fingerprint }),
            Principal::Peer(p) => Err(Problem::new(ProblemCode::NotAnOrganisation, format!("This endpoint is for organisations; the certificate presented is peer gateway `{p}`'s.")).into_response()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let c = caller(parts).map_err(|b| *b)?;
        match &c.principal {
            Principal::Peer(peer) => Ok(PeerCaller { peer: peer.clone(), fingerprint: c.fingerprint }),
            Principal::Organisation(o) => Err(Problem::new(ProblemCode::NotAPeer, format!("This endpoint is for peer gateways delivering transfers; the certificate presented is organisation `{o}`'s. Organisations submit to /v1/transfers.")).into_response()),
        }
    }
}
