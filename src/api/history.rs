//! `GET /builds` and `GET /builds/{id}` on the internal listener: the
//! build history as JSON (signed like every admin route).

use super::AppState;
use crate::history::{Filter, History};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /builds[?image=…&result=…&before=N&limit=N]`: a page of builds,
/// newest first, with `next` for the page after it.
pub async fn list(State(state): State<AppState>, Query(filter): Query<Filter>) -> Response {
    with_history(&state, move |h| h.list(&filter).map(|page| Json(page).into_response())).await
}

/// `GET /builds/{id}`: one build by position or request id.
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    with_history(&state, move |h| {
        Ok(match h.get(&id)? {
            Some(entry) => Json(entry).into_response(),
            None => not_found(&format!("no build {id} in the history")),
        })
    })
    .await
}

/// Runs a read of the history off the async threads.
async fn with_history(
    state: &AppState,
    read: impl FnOnce(&History) -> Result<Response, crate::history::HistoryError> + Send + 'static,
) -> Response {
    let Some(history) = state.history.clone() else {
        return not_found("the build history is off on this server (--history-size 0)");
    };
    let read = tokio::task::spawn_blocking(move || read(&history));
    match read.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, message)
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}
