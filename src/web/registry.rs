//! The IT team's pages (role `admin`): the registry as readable tables, who may share with
//! whom, an organisation's page, the explain form, and the configuration's reload status.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::WebApp;
use super::signin::SignedIn;

pub async fn overview(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}

pub async fn organisation(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}

pub async fn explain(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}

pub async fn status(State(_app): State<Arc<WebApp>>, _s: SignedIn) -> Response {
    super::pages::not_found().await
}
