//! `report.svg`: the training curves and the test confusion matrix of a run, as one
//! self-contained SVG written next to the model (open it in any browser).

use std::fmt::Write;

use wasm_infer::{EvalMetrics, ModelManifest};

use crate::train::EpochMetrics;

const W: f64 = 960.0;
const H: f64 = 400.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Render the curves of `history` (train/val loss on a shared axis, train/val accuracy on
/// 0–1, `best_epoch` marked) and the confusion matrix of the manifest's test metrics (cells
/// shaded by row-normalised count, counts printed).
pub fn svg(manifest: &ModelManifest, history: &[EpochMetrics], best_epoch: usize) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let m = manifest;
    let _ = write!(
        s,
        r#"<text x="16" y="22" font-size="15" font-weight="bold">{} — best epoch {} of {}</text>"#,
        escape(&m.model_id),
        best_epoch,
        history.len()
    );

    curves(&mut s, history, best_epoch);
    if let Some(metrics) = &m.metrics {
        confusion(&mut s, metrics, &m.labels);
    }
    s.push_str("</svg>\n");
    s
}

/// The curves panel: loss and accuracy per epoch, the kept epoch marked, a legend below.
fn curves(s: &mut String, history: &[EpochMetrics], best_epoch: usize) {
    let (x0, y0, pw, ph) = (50.0, 50.0, 420.0, 300.0);
    let n = history.len().max(2) as f64 - 1.0;
    let max_loss = history
        .iter()
        .flat_map(|e| [e.train_loss, e.val_loss])
        .fold(1e-9, f64::max);
    let px = |i: usize| x0 + pw * i as f64 / n;
    let _ = write!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    // (name, colour, value in 0..1 given the epoch and the largest loss)
    type Series = (&'static str, &'static str, fn(&EpochMetrics, f64) -> f64);
    let series: [Series; 4] = [
        ("train loss", "#d62728", |e, max| e.train_loss / max),
        ("val loss", "#ff9896", |e, max| e.val_loss / max),
        ("train acc", "#1f77b4", |e, _| e.train_accuracy),
        ("val acc", "#aec7e8", |e, _| e.val_accuracy),
    ];
    for (k, (name, colour, f)) in series.iter().enumerate() {
        let points: Vec<String> = history
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    "{:.1},{:.1}",
                    px(i),
                    y0 + ph * (1.0 - f(e, max_loss).clamp(0.0, 1.0))
                )
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="curve" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        // Legend in a row under the plot, clear of the curves.
        let lx = x0 + 105.0 * k as f64;
        let ly = y0 + ph + 40.0;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{ly}">{name}</text>"#,
            ly - 9.0,
            lx + 15.0,
        );
    }
    let best_x = px(best_epoch.saturating_sub(1));
    let _ = write!(
        s,
        r##"<line x1="{best_x:.1}" y1="{y0}" x2="{best_x:.1}" y2="{}" stroke="#2ca02c" stroke-dasharray="4 3"/>"##,
        y0 + ph
    );
    let _ = write!(
        s,
        r#"<text x="{x0}" y="{}">epochs 1–{} · accuracy 0–1 · loss 0–{max_loss:.2}</text>"#,
        y0 + ph + 20.0,
        history.len()
    );
}

/// The confusion matrix panel of the test split, rows by true class.
fn confusion(s: &mut String, metrics: &EvalMetrics, labels: &[String]) {
    let k = metrics.confusion.len().max(1);
    let (cx, cy, side) = (620.0, 50.0, 300.0);
    let cell = side / k as f64;
    let _ = write!(
        s,
        r#"<text x="{}" y="{}">test split: accuracy {:.3} · macro-F1 {:.3} · majority {:.3}</text><text x="{cx}" y="{}">rows: true class · columns: predicted</text>"#,
        cx - 110.0,
        cy - 12.0,
        metrics.accuracy,
        metrics.macro_f1,
        metrics.majority_baseline,
        cy + side + 20.0
    );
    for (i, row) in metrics.confusion.iter().enumerate() {
        let total: u32 = row.iter().sum::<u32>().max(1);
        let label = labels.get(i).map(String::as_str).unwrap_or("?");
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            cx - 6.0,
            cy + cell * (i as f64 + 0.6),
            escape(label)
        );
        for (j, v) in row.iter().enumerate() {
            let shade = f64::from(*v) / f64::from(total);
            // White for none of the row, deep blue for all of it.
            let level = (255.0 - 215.0 * shade).round() as u8;
            let _ = write!(
                s,
                r#"<rect class="cell" x="{:.1}" y="{:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({level},{level},255)" stroke="white"/>"#,
                cx + cell * j as f64,
                cy + cell * i as f64,
            );
            let text_colour = if shade > 0.5 { "white" } else { "black" };
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{text_colour}">{v}</text>"#,
                cx + cell * (j as f64 + 0.5),
                cy + cell * (i as f64 + 0.6)
            );
        }
    }
}
