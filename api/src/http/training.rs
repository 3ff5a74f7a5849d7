//! Training routes: queue a run (classify or rank), history, one run, cancel, and the run's
//! live progress as Server-Sent Events (one shared poller per run, [`jobs::feed`]; only what
//! changed is sent).

use contract::api::RunStatusEvent;
pub use contract::api::TrainRequest;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};

use super::extract::{Admin, P, Q, Shared};
use crate::error::ErrorBody;
use crate::images;
use crate::jobs::{self, RunInfo};
use crate::{Error, Result};

#[utoipa::path(post, path = "/api/train", tag = "training", request_body(content = Option<TrainRequest>, description = "optional: an empty body queues a classification run of the first dataset with default parameters"),
    responses((status = 202, body = RunInfo), (status = 404, body = ErrorBody, description = "no such dataset"), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn start_training(
    State(st): State<Shared>,
    _: Admin,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RunInfo>)> {
    // An empty body (or `null`) is a request with every default; anything else must be a JSON
    // object (serde would also take an array as the struct's fields in order).
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("train request is not valid JSON: {e}")))?
    };
    let req: TrainRequest = match value {
        serde_json::Value::Null => TrainRequest::default(),
        v @ serde_json::Value::Object(_) => serde_json::from_value(v)
            .map_err(|e| Error::BadRequest(format!("train request: {e}")))?,
        other => {
            return Err(Error::BadRequest(format!(
                "a train request is a JSON object, not {other}"
            )));
        }
    };
    let task = req.task.as_deref().unwrap_or("classify");
    let params = jobs::parse_task_params(task, req.params.as_ref())?;
    // Without a dataset: the first one that holds what the task trains on (boxes for
    // detectors, labelled images otherwise).
    let detect = task == contract::Task::Detect.as_str();
    let dataset = match req.dataset_id {
        Some(d) => d,
        None => images::list_datasets(&st.db)
            .await?
            .into_iter()
            .find(|d| (d.task == contract::Task::Detect) == detect)
            .map(|d| d.id)
            .ok_or_else(|| {
                Error::NotFound(if detect {
                    "no detection dataset yet (POST /api/datasets with \"task\": \"detect\")".into()
                } else {
                    "no dataset yet".into()
                })
            })?,
    };
    let run = jobs::enqueue_task(&st.db, &dataset, task, &params, "manual").await?;
    st.wake.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// History query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Page size (1 to 1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/train", tag = "training", params(LimitQuery), responses((status = 200, body = Vec<RunInfo>)))]
pub(super) async fn list_runs(
    State(st): State<Shared>,
    Q(q): Q<LimitQuery>,
) -> Result<Json<Vec<RunInfo>>> {
    let limit = crate::util::in_range("limit", q.limit, 1, 1000)?.unwrap_or(50);
    Ok(Json(jobs::list_runs(&st.db, limit).await?))
}

#[utoipa::path(get, path = "/api/train/{id}", tag = "training", params(("id" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 404, body = ErrorBody)))]
pub(super) async fn get_run(State(st): State<Shared>, P(id): P<String>) -> Result<Json<RunInfo>> {
    Ok(Json(jobs::get_run(&st.db, &id).await?))
}

#[utoipa::path(post, path = "/api/train/{id}/cancel", tag = "training", params(("id" = String, Path)),
    responses((status = 202, body = RunInfo), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn cancel_run(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
) -> Result<(StatusCode, Json<RunInfo>)> {
    Ok((StatusCode::ACCEPTED, Json(jobs::cancel(&st.db, &id).await?)))
}

/// Where one SSE stream stands: the run as last sent and the events not yet sent.
struct EventState {
    sub: jobs::Subscription,
    /// Whether the channel's current value was looked at (later ones are waited for).
    looked: bool,
    last: Option<RunInfo>,
    queue: VecDeque<Event>,
    finished: bool,
}

fn json_event(name: &str, v: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

/// Events to send when a run moves from `last` to `now`.
fn diff_events(last: Option<&RunInfo>, now: &RunInfo) -> Vec<Event> {
    let mut out = Vec::new();
    let Some(last) = last else {
        out.push(json_event("snapshot", now));
        return out;
    };
    if last.status != now.status {
        out.push(json_event(
            "status",
            &RunStatusEvent {
                status: now.status,
                error: now.error.clone(),
                model_id: now.model_id.clone(),
                attempts: now.attempts,
            },
        ));
    }
    let seen = if now.epochs.len() >= last.epochs.len() {
        last.epochs.len()
    } else {
        0
    };
    for e in &now.epochs[seen..] {
        out.push(json_event("epoch", e));
    }
    if now.progress != last.progress
        && let Some(p) = &now.progress
    {
        out.push(json_event("progress", p));
    }
    out
}

/// Wait for the run's shared poller to see something new, and turn it into events; the
/// stream ends after `done`, when the poller stops, or when the server shuts down.
async fn next_event(
    mut s: EventState,
) -> Option<(std::result::Result<Event, Infallible>, EventState)> {
    loop {
        if let Some(ev) = s.queue.pop_front() {
            return Some((Ok(ev), s));
        }
        if s.finished || *s.sub.shutdown.borrow() {
            return None;
        }
        // The value present at subscription time is looked at at once; after that, wait for
        // the poller to publish a new one.
        if s.looked {
            tokio::select! {
                changed = s.sub.run.changed() => if changed.is_err() { return None },
                _ = s.sub.shutdown.wait_for(|x| *x) => return None,
            }
        }
        s.looked = true;
        let seen = s.sub.run.borrow_and_update().clone();
        match seen {
            None => {}
            Some(Ok(run)) => {
                s.queue.extend(diff_events(s.last.as_ref(), &run));
                if run.is_terminal() {
                    s.queue.push_back(json_event("done", &run));
                    s.finished = true;
                }
                s.last = Some(run);
            }
            Some(Err(detail)) => {
                s.queue.push_back(json_event(
                    "error",
                    &ErrorBody {
                        error: "internal".into(),
                        detail,
                        request_id: None,
                    },
                ));
                s.finished = true;
            }
        }
    }
}

#[utoipa::path(get, path = "/api/train/{id}/events", tag = "training", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-Sent Events: `snapshot` (the run), then `progress`, `epoch`, `status` as they happen, and `done` (the final run)"),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody, description = "too many progress streams open")))]
pub(super) async fn run_events(
    State(st): State<Shared>,
    P(id): P<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let sub = st.feeds.subscribe(&st.db, &id).await?;
    let init = EventState {
        sub,
        looked: false,
        last: None,
        queue: VecDeque::new(),
        finished: false,
    };
    let stream = futures::stream::unfold(init, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
