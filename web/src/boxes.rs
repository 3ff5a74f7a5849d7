//! Drawing boxes on an image, for detection datasets (Contribute, and the admin's review): drag
//! over the image to draw a box with the label chosen for new boxes; each box's label can be
//! changed, or the box deleted. Boxes are kept in the image's own pixels (what the server
//! stores and checks), whatever size the image is shown at.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use contract::api::ImageBox;

/// Boxes smaller than this (in the image's pixels, either side) are taken for a click, not a
/// box.
const MIN_SIDE: f32 = 4.0;

/// A point of a pointer event in the image's pixels (`size`), clamped to the image.
fn at(ev: &web_sys::PointerEvent, size: (u32, u32)) -> Option<(f32, f32)> {
    let el = ev.current_target()?.dyn_into::<web_sys::Element>().ok()?;
    let r = el.get_bounding_client_rect();
    if r.width() <= 0.0 || r.height() <= 0.0 {
        return None;
    }
    let x = ((f64::from(ev.client_x()) - r.left()) / r.width()).clamp(0.0, 1.0);
    let y = ((f64::from(ev.client_y()) - r.top()) / r.height()).clamp(0.0, 1.0);
    Some((x as f32 * size.0 as f32, y as f32 * size.1 as f32))
}

/// The box spanned by two corners.
fn spanned((x0, y0): (f32, f32), (x1, y1): (f32, f32)) -> [f32; 4] {
    [x0.min(x1), y0.min(y1), (x1 - x0).abs(), (y1 - y0).abs()]
}

/// The image at `src` (`size`: its pixels) with `boxes` drawn over it: drawing, relabelling
/// and deleting them.
#[component]
pub fn BoxEditor(
    /// The image's URL.
    src: String,
    /// Its width and height in pixels.
    size: (u32, u32),
    /// Labels boxes may take.
    labels: Vec<String>,
    /// The boxes, edited in place.
    boxes: RwSignal<Vec<ImageBox>>,
    /// Names the editor for tests and screen readers.
    #[prop(into)]
    name: String,
) -> impl IntoView {
    let (w, h) = size;
    let current = RwSignal::new(labels.first().cloned().unwrap_or_default());
    let start = RwSignal::new(None::<(f32, f32)>);
    let drag = RwSignal::new(None::<[f32; 4]>);
    let down = move |ev: web_sys::PointerEvent| {
        ev.prevent_default();
        if let Some(p) = at(&ev, size) {
            if let Some(el) = ev
                .current_target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            {
                let _ = el.set_pointer_capture(ev.pointer_id());
            }
            start.set(Some(p));
            drag.set(Some([p.0, p.1, 0.0, 0.0]));
        }
    };
    let moved = move |ev: web_sys::PointerEvent| {
        if let (Some(s), Some(p)) = (start.get_untracked(), at(&ev, size)) {
            drag.set(Some(spanned(s, p)));
        }
    };
    let up = move |ev: web_sys::PointerEvent| {
        let Some(s) = start.get_untracked() else {
            return;
        };
        start.set(None);
        drag.set(None);
        let Some(p) = at(&ev, size) else { return };
        let bbox = spanned(s, p);
        if bbox[2] >= MIN_SIDE && bbox[3] >= MIN_SIDE {
            let label = current.get_untracked();
            boxes.update(|b| b.push(ImageBox { label, bbox }));
        }
    };
    let stroke = (w.max(h) as f32 / 160.0).max(1.5);
    let font = (w.max(h) as f32 / 22.0).max(8.0);
    let label_options = labels.clone();
    view! {
        <div class="box-editor" data-testid=format!("{name}-editor")>
            <label>"Label for new boxes "
                <select data-testid=format!("{name}-label") prop:value=move || current.get()
                    on:change=move |ev| current.set(event_target_value(&ev))>
                    {label_options.iter().map(|l| view! { <option value=l.clone()>{l.clone()}</option> }).collect_view()}
                </select>
            </label>
            <p class="hint">"Drag over the image to draw a box around each object."</p>
            <figure class="detected drawing">
                <img class="preview" src=src alt="the image to draw boxes on"/>
                <svg class="boxes draw" data-testid=format!("{name}-canvas")
                    viewBox=format!("0 0 {w} {h}") preserveAspectRatio="none"
                    on:pointerdown=down on:pointermove=moved on:pointerup=up>
                    {move || boxes.get().into_iter().map(|b| {
                        let [x, y, bw, bh] = b.bbox;
                        let ty = if y > font { y - font / 4.0 } else { y + font };
                        view! {
                            <g>
                                <rect x=x y=y width=bw height=bh fill="none" stroke="#b0102f" stroke-width=stroke/>
                                <text x=x + 2.0 y=ty fill="#b0102f" font-size=font class="box-label">{b.label.clone()}</text>
                            </g>
                        }
                    }).collect_view()}
                    {move || drag.get().map(|[x, y, bw, bh]| view! {
                        <rect x=x y=y width=bw height=bh fill="none" stroke="#2f4bb0" stroke-width=stroke stroke-dasharray="6 4"/>
                    })}
                </svg>
            </figure>
            <ol class="boxes-list" data-testid=format!("{name}-boxes") data-count=move || boxes.get().len().to_string()>
                {move || boxes.get().into_iter().enumerate().map(|(i, b)| {
                    let [x, y, bw, bh] = b.bbox;
                    let options = labels.clone();
                    let chosen = b.label.clone();
                    view! {
                        <li data-label=b.label.clone() data-bbox=format!("{x},{y},{bw},{bh}")>
                            <select aria-label=format!("label of box {}", i + 1) prop:value=chosen
                                on:change=move |ev| {
                                    let l = event_target_value(&ev);
                                    boxes.update(|bs| if let Some(b) = bs.get_mut(i) { b.label = l; });
                                }>
                                {options.iter().map(|l| view! { <option value=l.clone()>{l.clone()}</option> }).collect_view()}
                            </select>
                            <span class="where">{format!("at {x:.0}, {y:.0}, {bw:.0} × {bh:.0} px")}</span>
                            <button type="button" data-testid="delete-box"
                                on:click=move |_| boxes.update(|bs| { if i < bs.len() { bs.remove(i); } })>"Delete"</button>
                        </li>
                    }
                }).collect_view()}
            </ol>
        </div>
    }
}
