//! The transfer log for data protection officers and auditors.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::WebApp;
use super::signin::SignedIn;

pub async fn list(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
pub async fn record(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
pub async fn subject_form(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
pub async fn subject(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
pub async fn export(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
pub async fn report(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
pub async fn access(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
pub async fn verify(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
