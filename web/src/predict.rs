//! Predict page: pick, drop or photograph an image; the worker classifies it, or finds the
//! objects in it (boxes drawn over the image), in this browser.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use contract::api::Prediction;
use contract::detection::LabelledBox;
use contract::worker::ToWorker;

use crate::Ctx;

/// What the page asks of an image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Its labels.
    Classify,
    /// The objects in it, boxed.
    Detect,
}

/// A detection answer: the boxes over an image of `width × height` pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The detector that answered.
    pub model_id: String,
    /// The boxes, best first, in the image's pixels.
    pub boxes: Vec<LabelledBox>,
    /// The image's size in pixels.
    pub size: (u32, u32),
    /// Milliseconds in this browser.
    pub ms: f64,
}

/// What the page shows; lives in the app so a result survives a visit to another page.
#[derive(Clone, Copy)]
pub struct State {
    /// Classify or detect.
    pub mode: RwSignal<Mode>,
    /// The last detection answer.
    pub found: RwSignal<Option<Found>>,
    /// Why detection is unavailable or failed.
    pub detect_error: RwSignal<Option<String>>,
    /// Detection answers so far (tells a new answer from the previous one).
    pub detections: RwSignal<u32>,
    /// Last result and the milliseconds it took.
    pub result: RwSignal<Option<(Vec<Prediction>, f64)>>,
    /// Object or data URL of the image being classified.
    pub preview: RwSignal<Option<String>>,
    /// Waiting for the worker.
    pub busy: RwSignal<bool>,
    /// Results so far (lets tests and screen readers tell a new result from the previous one).
    pub results: RwSignal<u32>,
}

impl State {
    /// Nothing picked yet.
    pub fn new() -> Self {
        Self {
            mode: RwSignal::new(Mode::Classify),
            found: RwSignal::new(None),
            detect_error: RwSignal::new(None),
            detections: RwSignal::new(0),
            result: RwSignal::new(None),
            preview: RwSignal::new(None),
            busy: RwSignal::new(false),
            results: RwSignal::new(0),
        }
    }

    /// The worker answered.
    pub fn done(&self, predictions: Vec<Prediction>, ms: f64) {
        self.busy.set(false);
        self.results.update(|n| *n += 1);
        self.result.set(Some((predictions, ms)));
    }

    /// The worker found objects.
    pub fn detected(&self, found: Found) {
        self.busy.set(false);
        self.detect_error.set(None);
        self.detections.update(|n| *n += 1);
        self.found.set(Some(found));
    }

    /// Detection failed.
    pub fn detect_failed(&self, message: String) {
        self.busy.set(false);
        self.detect_error.set(Some(message));
    }

    fn show(&self, url: Option<String>) {
        if let Some(old) = self.preview.get_untracked()
            && old.starts_with("blob:")
        {
            let _ = web_sys::Url::revoke_object_url(&old);
        }
        self.preview.set(url);
        self.result.set(None);
        self.found.set(None);
        self.detect_error.set(None);
        self.busy.set(true);
    }
}

/// Preview a file and send its bytes to the worker (decoded there by the server's decoder).
fn classify_file(ctx: Ctx, file: web_sys::File) {
    ctx.predict
        .show(web_sys::Url::create_object_url_with_blob(&file).ok());
    leptos::task::spawn_local(async move {
        let Ok(buf) = JsFuture::from(file.array_buffer()).await else {
            ctx.predict.busy.set(false);
            ctx.status.set("error: could not read the file".into());
            return;
        };
        let bytes = js_sys::Uint8Array::new(&buf);
        let msg = match ctx.predict.mode.get_untracked() {
            Mode::Classify => ToWorker::Classify { k: 5 },
            Mode::Detect => ToWorker::Detect,
        };
        ctx.send(msg, Some(bytes.into()));
    });
}

/// The camera, while it is on.
struct Camera {
    stream: web_sys::MediaStream,
}

impl Camera {
    fn stop(&self) {
        for track in self.stream.get_tracks() {
            if let Ok(t) = track.dyn_into::<web_sys::MediaStreamTrack>() {
                t.stop();
            }
        }
    }
}

async fn open_camera() -> Result<web_sys::MediaStream, String> {
    let devices = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .media_devices()
        .map_err(|_| "this browser has no camera access (it needs https or localhost)")?;
    let constraints = web_sys::MediaStreamConstraints::new();
    let video = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&video, &"facingMode".into(), &"environment".into());
    constraints.set_video(&video);
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|e| format!("{e:?}"))?;
    let stream = JsFuture::from(promise)
        .await
        .map_err(|e| {
            js_sys::Reflect::get(&e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
                .unwrap_or_else(|| "the camera could not be opened".into())
        })?
        .dyn_into::<web_sys::MediaStream>()
        .map_err(|_| "not a media stream")?;
    Ok(stream)
}

/// Draw the current video frame and send its RGBA pixels to the worker.
fn snap(ctx: Ctx, video: &web_sys::HtmlVideoElement) -> Result<(), String> {
    let (w, h) = (video.video_width(), video.video_height());
    if w == 0 || h == 0 {
        return Err("the camera has not delivered a frame yet".into());
    }
    let canvas = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("canvas").ok())
        .and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok())
        .ok_or("no canvas")?;
    canvas.set_width(w);
    canvas.set_height(h);
    let g = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
        .ok_or("no 2d context")?;
    g.draw_image_with_html_video_element(video, 0.0, 0.0)
        .map_err(|e| format!("{e:?}"))?;
    let data = g
        .get_image_data(0.0, 0.0, w as f64, h as f64)
        .map_err(|e| format!("{e:?}"))?;
    // A camera frame is opaque, so the canvas's premultiplied alpha changes nothing.
    let rgba = js_sys::Uint8Array::from(&data.data().0[..]);
    ctx.predict
        .show(canvas.to_data_url_with_type("image/jpeg").ok());
    let msg = match ctx.predict.mode.get_untracked() {
        Mode::Classify => ToWorker::ClassifyRgba {
            width: w,
            height: h,
            k: 5,
        },
        Mode::Detect => ToWorker::DetectRgba {
            width: w,
            height: h,
        },
    };
    ctx.send(msg, Some(rgba.into()));
    Ok(())
}

/// The Predict page.
#[component]
pub fn PredictPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let on_file = move |ev: web_sys::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        if let Some(file) = input.files().and_then(|files| files.get(0)) {
            classify_file(ctx, file);
        }
        // Picking the same file again must classify again.
        input.set_value("");
    };
    // Dropping a file on the drop zone classifies it (instead of the browser opening it).
    let dragging = RwSignal::new(false);
    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|f| f.get(0))
        {
            classify_file(ctx, file);
        }
    };

    let mode = ctx.predict.mode;
    let tab = move |m: Mode, text: &'static str, id: &'static str| {
        view! {
            <button role="tab" data-testid=id aria-selected=move || (mode.get() == m).to_string()
                class=move || if mode.get() == m { "mode on" } else { "mode" }
                on:click=move |_| mode.set(m)>{text}</button>
        }
    };
    view! {
        <h1>"Predict"</h1>
        <div class="modes" role="tablist" aria-label="What to ask of the image">
            {tab(Mode::Classify, "Classify", "mode-classify")}
            {tab(Mode::Detect, "Detect objects", "mode-detect")}
        </div>
        <p class="hint">{move || match mode.get() {
            Mode::Classify => "Pick, drop or photograph an image: it is classified in this browser, not on the server.",
            Mode::Detect => "Pick, drop or photograph an image: the objects in it are found and boxed in this browser, not on the server.",
        }}</p>
        <label
            class=move || if dragging.get() { "drop over" } else { "drop" }
            data-testid="drop"
            on:dragover=move |ev: web_sys::DragEvent| { ev.prevent_default(); dragging.set(true); }
            on:dragleave=move |_| dragging.set(false)
            on:drop=on_drop
        >
            <span class="drop-text">"Choose an image, or drop one here"</span>
            <input type="file" accept="image/*" data-testid="file" on:change=on_file/>
        </label>
        <CameraPanel/>
        {move || match mode.get() {
            Mode::Classify => view! { <PredictionResult/> }.into_any(),
            Mode::Detect => view! { <DetectionResult/> }.into_any(),
        }}
    }
}

/// Colours of boxes and their labels, by label: distinct, and dark enough for text on the
/// page's background (contrast ≥ 4.5:1).
const BOX_COLOURS: [&str; 6] = [
    "#b0102f", "#1e6b2a", "#2f4bb0", "#8f4400", "#6a1b8a", "#005f5f",
];

/// The last detection: the image with its boxes drawn over it, and the boxes as a list.
#[component]
fn DetectionResult() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let st = ctx.predict;
    view! {
        <div class="result">
            <div class="answer" aria-live="polite" data-testid="answer">
                <p data-testid="busy" hidden=move || !st.busy.get()>"finding objects…"</p>
                <p class="error" data-testid="detect-error" hidden=move || st.detect_error.get().is_none()>
                    {move || st.detect_error.get().unwrap_or_default()}
                </p>
                {move || st.found.get().map(|f| {
                    let (w, h) = f.size;
                    // Label text in the image's pixels, so it reads the same at any image size.
                    let font = format!("{:.0}", (w.max(h) as f32 / 22.0).max(8.0));
                    let lift = (w.max(h) as f32 / 22.0).max(8.0);
                    let mut labels: Vec<String> = f.boxes.iter().map(|b| b.label.clone()).collect();
                    labels.sort();
                    labels.dedup();
                    let colour = move |label: &str| {
                        let i = labels.iter().position(|l| l == label).unwrap_or(0);
                        BOX_COLOURS[i % BOX_COLOURS.len()]
                    };
                    let rects = f.boxes.iter().map(|b| {
                        let [x, y, bw, bh] = b.bbox;
                        let c = colour(&b.label);
                        let text = format!("{} {:.0} %", b.label, b.score * 100.0);
                        let ty = if y > lift { y - lift / 4.0 } else { y + lift };
                        view! {
                            <g>
                                <rect x=x y=y width=bw height=bh fill="none" stroke=c stroke-width="3" vector-effect="non-scaling-stroke"/>
                                <text x=x + 2.0 y=ty fill=c font-size=font.clone() class="box-label">{text}</text>
                            </g>
                        }
                    }).collect_view();
                    let items = f.boxes.iter().map(|b| {
                        let [x, y, bw, bh] = b.bbox;
                        view! {
                            <li data-label=b.label.clone() data-score=b.score.to_string()
                                data-bbox=format!("{x},{y},{bw},{bh}")>
                                <span class="label" style=format!("color: {}", colour(&b.label))>{b.label.clone()}</span>
                                <span class="score">{format!("{:.1} %", b.score * 100.0)}</span>
                                <span class="where">{format!("at {x:.0}, {y:.0}, {bw:.0} × {bh:.0} px")}</span>
                            </li>
                        }
                    }).collect_view();
                    let n = f.boxes.len();
                    view! {
                        <figure class="detected" data-testid="detected" data-run=st.detections.get_untracked().to_string()>
                            {st.preview.get_untracked().map(|url| view! { <img class="preview" src=url alt="the image searched for objects"/> })}
                            <svg class="boxes" viewBox=format!("0 0 {w} {h}") preserveAspectRatio="none" aria-hidden="true">{rects}</svg>
                        </figure>
                        <p data-testid="box-count">{match n {
                            0 => "No object found.".to_string(),
                            1 => "1 object found:".to_string(),
                            n => format!("{n} objects found:"),
                        }}</p>
                        <ol class="boxes-list" aria-label="Objects found, most likely first" data-testid="boxes" data-ms=f.ms.to_string() data-width=w.to_string() data-height=h.to_string()>{items}</ol>
                        <p class="timing" data-testid="timing">{format!("{:.0} ms in this browser, detector {}", f.ms, f.model_id)}</p>
                    }
                })}
            </div>
        </div>
    }
}

/// The camera: start it, take a photo (classified like a file), close it.
#[component]
fn CameraPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let camera = StoredValue::new_local(None::<Camera>);
    let camera_on = RwSignal::new(false);
    let camera_error = RwSignal::new(None::<String>);
    let video_ref = NodeRef::<leptos::html::Video>::new();
    let stop_camera = move || {
        camera.update_value(|c| {
            if let Some(c) = c.take() {
                c.stop();
            }
        });
        camera_on.set(false);
    };
    let start_camera = move |_| {
        camera_error.set(None);
        leptos::task::spawn_local(async move {
            match open_camera().await {
                Ok(stream) => {
                    camera_on.set(true);
                    if let Some(video) = video_ref.get_untracked() {
                        video.set_src_object(Some(&stream));
                        let _ = video.play();
                    }
                    camera.set_value(Some(Camera { stream }));
                }
                Err(e) => camera_error.set(Some(e)),
            }
        });
    };
    let take_photo = move |_| {
        if let Some(video) = video_ref.get_untracked()
            && let Err(e) = snap(ctx, &video)
        {
            camera_error.set(Some(e));
        }
    };
    on_cleanup(stop_camera);

    view! {
        <div class="camera">
            <button data-testid="camera" hidden=move || camera_on.get() on:click=start_camera>"Use the camera"</button>
            <button data-testid="snap" hidden=move || !camera_on.get() on:click=take_photo>"Take the photo"</button>
            <button hidden=move || !camera_on.get() on:click=move |_| stop_camera()>"Close the camera"</button>
            <p class="error" data-testid="camera-error" hidden=move || camera_error.get().is_none()>
                {move || camera_error.get().unwrap_or_default()}
            </p>
            <video node_ref=video_ref class="video" hidden=move || !camera_on.get() muted=true playsinline=true></video>
        </div>
    }
}

/// The last prediction: the image, the top labels with bars, the time it took.
#[component]
fn PredictionResult() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let st = ctx.predict;
    view! {
        <div class="result">
            {move || st.preview.get().map(|url| view! { <img class="preview" src=url alt="the image being classified"/> })}
            // A live region that exists before the first result, so screen readers announce each
            // new prediction.
            <div class="answer" aria-live="polite" data-testid="answer">
                <p data-testid="busy" hidden=move || !st.busy.get()>"classifying…"</p>
                {move || st.result.get().map(|(preds, ms)| view! {
                    <ol class="predictions" aria-label="Predicted labels, most likely first" data-testid="predictions" data-ms=ms.to_string() data-run=st.results.get_untracked().to_string()>
                        {preds.into_iter().map(|p| {
                            let width = format!("width: {:.1}%", p.score * 100.0);
                            view! {
                                <li data-label=p.label.clone() data-score=p.score.to_string()>
                                    <span class="label">{p.label.clone()}</span>
                                    <span class="bar"><span class="fill" style=width></span></span>
                                    <span class="score">{format!("{:.1} %", p.score * 100.0)}</span>
                                </li>
                            }
                        }).collect_view()}
                    </ol>
                    <p class="timing" data-testid="timing">
                        {format!("{ms:.0} ms in this browser, model {}", ctx.model_id.get_untracked().unwrap_or_default())}
                    </p>
                })}
            </div>
        </div>
    }
}
