//! Admin page (needs the admin token): review queue (images with their captions), the queue of
//! captions sent for already approved images, retrain with live curves, model versions with
//! metrics and confusion matrix, promote and rollback.

mod gate;
mod review;
mod training;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::net;
use contract::api::{
    EpochMetrics as Epoch, ImagePage, Progress, ReviewRequest, ReviewResponse, RunInfo as Run,
    RunStatusEvent,
};
use review::{CaptionQueue, Review, caption_summary};
use training::{Models, Training, apply_progress};

const TOKEN_KEY: &str = "edgeml-admin-token";
/// Captions listed at once in the caption queue (oldest first).
const CAPTION_PAGE: usize = 48;

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

fn when(ms: i64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    let s: String = d.to_iso_string().into();
    s.get(..19).unwrap_or(&s).replace('T', " ")
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// Admin state shared by the sections.
#[derive(Clone, Copy)]
struct Admin {
    token: RwSignal<String>,
    /// Bumped when something changed on the server (lists are fetched again).
    version: RwSignal<u32>,
    /// The run being watched.
    run: RwSignal<Option<Run>>,
    /// Batch losses of the watched run (step, loss).
    batches: RwSignal<Vec<(f64, f64)>>,
    events: StoredValue<Option<web_sys::EventSource>, LocalStorage>,
    message: RwSignal<Option<String>>,
}

impl Admin {
    fn token(&self) -> String {
        self.token.get_untracked()
    }
    fn changed(&self) {
        self.version.update(|v| *v += 1);
    }

    /// Send review decisions (images, captions or both), say what changed or why not, and
    /// fetch the lists again.
    async fn review(self, body: ReviewRequest) {
        match net::post::<ReviewResponse>("/api/review", Some(&self.token()), &body).await {
            Ok(r) => {
                let mut parts = Vec::new();
                if !r.images.is_empty() || body.captions.is_empty() {
                    parts.push(format!("{} image(s) updated", r.images.len()));
                }
                if let Some(c) = caption_summary(&r.captions) {
                    parts.push(c);
                }
                let mut msg = parts.join("; ");
                if let Some(run) = r.auto_retrain {
                    msg.push_str(&format!("; enough new images: retrain {run} started"));
                    self.watch(&run);
                }
                self.message.set(Some(msg));
            }
            Err(e) => self.message.set(Some(format!("review failed: {e}"))),
        }
        self.changed();
    }

    /// Follow a run's Server-Sent Events.
    fn watch(self, run_id: &str) {
        self.events.update_value(|e| {
            if let Some(e) = e.take() {
                e.close();
            }
        });
        self.batches.set(Vec::new());
        let Ok(es) = web_sys::EventSource::new(&format!("/api/train/{run_id}/events")) else {
            self.message
                .set(Some("this browser cannot follow the run".into()));
            return;
        };
        let on = |name: &str, f: Box<dyn Fn(String)>| {
            let cb =
                Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                    f(ev.data().as_string().unwrap_or_default());
                });
            let _ = es.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
            cb.forget();
        };
        let run = self.run;
        let batches = self.batches;
        on(
            "snapshot",
            Box::new(move |d| {
                if let Ok(r) = serde_json::from_str::<Run>(&d) {
                    run.set(Some(r));
                }
            }),
        );
        on(
            "progress",
            Box::new(move |d| {
                if let Ok(p) = serde_json::from_str::<Progress>(&d) {
                    apply_progress(run, batches, p);
                }
            }),
        );
        on(
            "epoch",
            Box::new(move |d| {
                if let Ok(e) = serde_json::from_str::<Epoch>(&d) {
                    run.update(|r| {
                        if let Some(r) = r
                            && r.epochs.iter().all(|x| x.epoch != e.epoch)
                        {
                            r.epochs.push(e);
                        }
                    });
                }
            }),
        );
        on(
            "status",
            Box::new(move |d| {
                if let Ok(s) = serde_json::from_str::<RunStatusEvent>(&d) {
                    run.update(|r| {
                        if let Some(r) = r {
                            r.status = s.status;
                            r.error = s.error;
                        }
                    });
                }
            }),
        );
        let this = self;
        on(
            "done",
            Box::new(move |d| {
                if let Ok(r) = serde_json::from_str::<Run>(&d) {
                    run.set(Some(r));
                }
                this.events.update_value(|e| {
                    if let Some(e) = e.take() {
                        e.close();
                    }
                });
                this.changed();
            }),
        );
        self.events.set_value(Some(es));
    }
}

/// The Admin page.
#[component]
pub fn AdminPage() -> impl IntoView {
    let admin = Admin {
        token: RwSignal::new(
            session_storage()
                .and_then(|s| s.get_item(TOKEN_KEY).ok().flatten())
                .unwrap_or_default(),
        ),
        version: RwSignal::new(0),
        run: RwSignal::new(None),
        batches: RwSignal::new(Vec::new()),
        events: StoredValue::new_local(None),
        message: RwSignal::new(None),
    };
    on_cleanup(move || {
        admin.events.update_value(|e| {
            if let Some(e) = e.take() {
                e.close();
            }
        });
    });
    let typed = RwSignal::new(String::new());
    let signed_in = RwSignal::new(false);
    let sign_error = RwSignal::new(None::<String>);
    let check = move |token: String| {
        leptos::task::spawn_local(async move {
            match net::get::<ImagePage>("/api/review?limit=1", Some(&token)).await {
                Ok(_) => {
                    if let Some(s) = session_storage() {
                        let _ = s.set_item(TOKEN_KEY, &token);
                    }
                    admin.token.set(token);
                    sign_error.set(None);
                    signed_in.set(true);
                }
                Err(e) => sign_error.set(Some(e.to_string())),
            }
        });
    };
    if !admin.token.get_untracked().is_empty() {
        check(admin.token.get_untracked());
    }
    let sign_in = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        check(typed.get_untracked());
    };
    let sign_out = move |_| {
        if let Some(s) = session_storage() {
            let _ = s.remove_item(TOKEN_KEY);
        }
        admin.token.set(String::new());
        signed_in.set(false);
    };

    view! {
        <h1>"Admin"</h1>
        <Show when=move || signed_in.get() fallback=move || view! {
            <form class="signin" on:submit=sign_in>
                <label>"Admin token " <input type="password" data-testid="token" autocomplete="current-password"
                    prop:value=move || typed.get() on:input=move |ev| typed.set(event_target_value(&ev))/></label>
                <button type="submit" data-testid="sign-in">"Sign in"</button>
                <p class="error" data-testid="sign-in-error" hidden=move || sign_error.get().is_none()>{move || sign_error.get().unwrap_or_default()}</p>
            </form>
        }>
            <p class="hint">"Signed in for this tab. " <button on:click=sign_out>"Sign out"</button></p>
            <p class="notice-inline" data-testid="admin-message" hidden=move || admin.message.get().is_none()>{move || admin.message.get().unwrap_or_default()}</p>
            <Review admin=admin/>
            <CaptionQueue admin=admin/>
            <Training admin=admin/>
            <Models admin=admin/>
        </Show>
    }
}
