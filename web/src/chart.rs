//! Plots drawn as inline SVG: training curves and the confusion matrix.

use leptos::prelude::*;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Shown in the legend next to its colour.
    pub name: &'static str,
    /// CSS colour.
    pub color: &'static str,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 560.0;
const H: f64 = 220.0;
const PAD_L: f64 = 44.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 12.0;
const PAD_B: f64 = 28.0;

/// Nice round ticks covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// A line chart (x: epochs or steps, y: the series' values), with axes and a legend.
#[component]
pub fn LineChart(
    /// Lines to draw.
    series: Vec<Series>,
    /// x-axis caption.
    x_label: &'static str,
    /// Fixed y range, else from the data.
    #[prop(optional)]
    y_range: Option<(f64, f64)>,
    /// `data-testid`.
    testid: &'static str,
) -> impl IntoView {
    let all = series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some((a, b)) = y_range {
        (y0, y1) = (a, b);
    } else {
        y0 = y0.min(0.0);
        y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.05 };
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let sx = move |x: f64| PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD_R);
    let sy = move |y: f64| H - PAD_B - (y - y0) / (y1 - y0) * (H - PAD_T - PAD_B);
    let y_ticks = ticks(y0, y1, 4);
    let x_ticks = ticks(x0, x1, 6);
    let points = series.iter().map(|s| s.points.len()).sum::<usize>();
    // What a screen reader says for the chart: the lines, the x range, each line's last value.
    let last = series
        .iter()
        .filter_map(|s| s.points.last().map(|(_, y)| format!("{} {y:.3}", s.name)))
        .collect::<Vec<_>>();
    let names = series.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
    let description = if last.is_empty() {
        format!("{names} by {x_label}: no points yet")
    } else {
        format!(
            "{names} by {x_label}, {x0} to {x1}; last: {}",
            last.join(", ")
        )
    };
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") data-testid=testid data-points=points.to_string() role="img" aria-label=description>
                {y_ticks.into_iter().map(|t| view! {
                    <line x1=PAD_L x2=W - PAD_R y1=sy(t) y2=sy(t) class="grid"/>
                    <text x=PAD_L - 6.0 y=sy(t) + 4.0 class="tick" text-anchor="end">{format!("{t:.2}")}</text>
                }).collect_view()}
                {x_ticks.into_iter().map(|t| view! {
                    <text x=sx(t) y=H - PAD_B + 16.0 class="tick" text-anchor="middle">{format!("{t}")}</text>
                }).collect_view()}
                <text x=W / 2.0 y=H - 2.0 class="tick" text-anchor="middle">{x_label}</text>
                {series.iter().map(|s| {
                    let pts = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect::<Vec<_>>().join(" ");
                    let dots = if s.points.len() <= 40 { s.points.clone() } else { Vec::new() };
                    view! {
                        <polyline points=pts fill="none" stroke=s.color stroke-width="2"/>
                        {dots.into_iter().map(|(x, y)| view! { <circle cx=sx(x) cy=sy(y) r="2.5" fill=s.color/> }).collect_view()}
                    }
                }).collect_view()}
            </svg>
            <figcaption class="legend">
                {series.iter().map(|s| view! {
                    <span><span class="swatch" style=format!("background:{}", s.color)></span>{s.name}</span>
                }).collect_view()}
            </figcaption>
        </figure>
    }
}

/// Confusion matrix: rows are the true labels, columns the predictions; darker = more images.
#[component]
pub fn Confusion(
    /// Labels in row/column order.
    labels: Vec<String>,
    /// Counts `[true][predicted]`.
    matrix: Vec<Vec<u32>>,
) -> impl IntoView {
    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let header = labels.clone();
    view! {
        <div class="scroll" tabindex="0" role="region" aria-label="Confusion matrix">
            <table class="confusion" data-testid="confusion">
                <tr>
                    <th class="corner">"true ↓ / predicted →"</th>
                    {header.into_iter().map(|l| view! { <th class="col">{l}</th> }).collect_view()}
                </tr>
                {matrix.into_iter().zip(labels).enumerate().map(|(i, (row, label))| view! {
                    <tr>
                        <th>{label}</th>
                        {row.into_iter().enumerate().map(|(j, n)| {
                            let a = n as f64 / max;
                            let style = format!(
                                "background: rgba({}, {}, {}, {a:.2}); color: {}",
                                if i == j { 43 } else { 201 }, if i == j { 123 } else { 42 }, if i == j { 185 } else { 42 },
                                if a > 0.55 { "#fff" } else { "#1d2330" }
                            );
                            view! { <td style=style data-count=n.to_string()>{n}</td> }
                        }).collect_view()}
                    </tr>
                }).collect_view()}
            </table>
        </div>
    }
}
