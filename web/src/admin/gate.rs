//! The gate's verdict on a model version: its figure with the interval, how the examples were
//! predicted, the test that decided, and every comparison (champion, baselines) as a row and
//! as a forest plot of the paired differences against the bar each had to clear.

use leptos::prelude::*;

use super::pct;
use contract::api::{Comparison, GateDecision};
use contract::evidence::{Check, Verdict};

/// The verdict's name as the models table and the detail show it.
pub(super) fn verdict_word(g: &GateDecision) -> &'static str {
    match g.verdict {
        Some(Verdict::Promote) => "promote",
        Some(Verdict::Inconclusive) => "inconclusive",
        Some(Verdict::Reject) => "reject",
        None if g.promote => "promote",
        None => "reject",
    }
}

fn points(x: f64) -> String {
    format!("{:+.1}", 100.0 * x)
}

fn check_word(c: Check) -> &'static str {
    match c {
        Check::Pass => "clears",
        Check::Unsure => "cannot tell",
        Check::Fail => "fails",
    }
}

/// The bar a comparison's difference had to clear (0 for trivial baselines, −margin for the
/// champion and the learnt baselines).
fn bar_of(c: &Comparison, margin: f64) -> f64 {
    if c.bar == "> 0" { 0.0 } else { -margin }
}

/// A forest plot: one line per comparison, the paired difference's interval and mean, and the
/// bar it had to clear as a tick.
#[component]
fn Forest(comparisons: Vec<Comparison>, margin: f64) -> impl IntoView {
    let (w, row, left) = (520.0, 26.0, 150.0);
    let h = row * comparisons.len() as f64 + 28.0;
    let lo = comparisons
        .iter()
        .map(|c| c.difference.lo.min(bar_of(c, margin)))
        .fold(0.0f64, f64::min)
        - 0.02;
    let hi = comparisons
        .iter()
        .map(|c| c.difference.hi)
        .fold(0.0f64, f64::max)
        + 0.02;
    let x = move |v: f64| left + (v - lo) / (hi - lo) * (w - left - 10.0);
    let zero = x(0.0);
    view! {
        <svg class="forest" data-testid="gate-forest" viewBox=format!("0 0 {w} {h}") width=w height=h role="img"
            aria-label="Paired differences of the candidate against each comparison, with their intervals">
            <line x1=zero x2=zero y1=4 y2=h - 20.0 stroke="#868e96" stroke-dasharray="3 3"/>
            <text x=zero y=h - 6.0 font-size="11" text-anchor="middle" fill="#495057">"0"</text>
            <text x=x(lo) y=h - 6.0 font-size="11" fill="#495057">{points(lo)}</text>
            <text x=x(hi) y=h - 6.0 font-size="11" text-anchor="end" fill="#495057">{format!("{} points", points(hi))}</text>
            {comparisons.into_iter().enumerate().map(|(i, c)| {
                let y = 14.0 + row * i as f64;
                let color = match c.check { Check::Pass => "#2f9e44", Check::Unsure => "#f08c00", Check::Fail => "#c92a2a" };
                let bar = x(bar_of(&c, margin));
                let name: String = c.against.chars().take(22).collect();
                view! {
                    <g>
                        <text x=4 y=y + 4.0 font-size="12" fill="#212529">{name}</text>
                        <line x1=bar x2=bar y1=y - 8.0 y2=y + 8.0 stroke="#212529" stroke-width="2"/>
                        <line x1=x(c.difference.lo) x2=x(c.difference.hi) y1=y y2=y stroke=color stroke-width="3"/>
                        <circle cx=x(c.difference.mean) cy=y r="4" fill=color/>
                    </g>
                }
            }).collect_view()}
        </svg>
    }
}

/// The gate's decision in full.
#[component]
pub(super) fn GateView(gate: GateDecision) -> impl IntoView {
    let word = verdict_word(&gate);
    let figure = match gate.interval {
        Some(i) => format!(
            "{} {} [{} – {}]",
            gate.metric,
            pct(i.mean),
            pct(i.lo),
            pct(i.hi)
        ),
        None => format!("{} {}", gate.metric, pct(gate.candidate)),
    };
    let margin = gate.margin;
    let comparisons = gate.comparisons.clone();
    view! {
        <div class="gate" data-testid="gate" data-verdict=word>
            <h4>
                "Gate: " <span class=format!("pill verdict-{word}") data-testid="gate-verdict">{word}</span>
            </h4>
            <p data-testid="gate-figure">{figure}
                {gate.n.map(|n| format!(" · n = {n}"))}
                {gate.confidence.map(|c| format!(" · {:.0} % intervals", 100.0 * c))}
            </p>
            {gate.method.clone().map(|m| view! { <p class="hint" data-testid="gate-method">{format!("examples: {m}")}</p> })}
            {gate.test.clone().map(|t| view! { <p class="hint" data-testid="gate-test">{format!("test: {t}")}</p> })}
            {(!comparisons.is_empty()).then(|| view! {
                <div class="scroll" tabindex="0" role="region" aria-label="Gate comparisons">
                    <table class="list" data-testid="gate-comparisons">
                        <tr><th>"against"</th><th>"its figure"</th><th>"difference (points)"</th><th>"interval"</th><th>"bar"</th><th>"McNemar p"</th><th>"result"</th></tr>
                        {comparisons.clone().into_iter().map(|c| view! {
                            <tr data-testid="gate-comparison" data-role=c.role.clone() data-check=check_word(c.check)>
                                <td>{c.against.clone()}{(!c.paired).then_some(" (unpaired)")}</td>
                                <td>{pct(c.score)}</td>
                                <td>{points(c.difference.mean)}</td>
                                <td>{format!("[{}, {}]", points(c.difference.lo), points(c.difference.hi))}</td>
                                <td>{c.bar.clone()}</td>
                                <td>{c.mcnemar.map(|m| format!("{:.3} ({} vs {})", m.p_value, m.candidate_only, m.other_only)).unwrap_or_default()}</td>
                                <td>{check_word(c.check)}</td>
                            </tr>
                        }).collect_view()}
                    </table>
                </div>
                <Forest comparisons=comparisons.clone() margin=margin/>
            })}
            <p class="hint">{gate.reason.clone()}</p>
        </div>
    }
}
