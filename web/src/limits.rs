//! What one upload request may carry: the server's limits (`GET /api/limits`, remembered in
//! local storage for offline use; [`Limits::default`] before the first answer, and from a
//! server that does not publish them), how a selection is split into requests that fit, and
//! what is refused before anything is queued, with the reason in words.

use contract::api::Limits;

use crate::net;

const LIMITS_KEY: &str = "edgeml-limits";
/// Multipart framing of one file part besides its bytes and name (boundary, headers): a
/// generous estimate of what browsers write.
const PART_OVERHEAD: u64 = 512;
/// The label and caption parts and the closing boundary, besides their text.
const FORM_OVERHEAD: u64 = 1024;
/// Longest uploader name the server accepts, in characters.
const UPLOADER_MAX_CHARS: usize = 64;

/// The limits last read from the server, else the defaults.
pub fn remembered() -> Limits {
    net::storage()
        .and_then(|s| s.get_item(LIMITS_KEY).ok().flatten())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Ask the server for its limits and remember them; what to use now. Without an answer
/// (offline, server down), the remembered ones; a server without the route (404) publishes
/// none, so the defaults.
pub async fn refresh() -> Limits {
    match net::get::<Limits>("/api/limits", None).await {
        Ok(limits) => {
            if let (Some(s), Ok(text)) = (net::storage(), serde_json::to_string(&limits)) {
                let _ = s.set_item(LIMITS_KEY, &text);
            }
            limits
        }
        Err(e) if e.status == 404 => {
            if let Some(s) = net::storage() {
                let _ = s.remove_item(LIMITS_KEY);
            }
            Limits::default()
        }
        Err(_) => remembered(),
    }
}

/// One picked file, as the limits see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    /// Its name (sent as the part's file name).
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The requests a contribution of `files` (one label and caption for all) is sent in: groups
/// of indexes into `files`, in order, each within `max_files` and, with its multipart framing,
/// `max_upload_bytes`. Refused with the reason, naming the file(s) and the limit, when the
/// caption is too long or a file cannot fit in any request.
pub fn plan(
    limits: &Limits,
    files: &[Picked],
    label: &str,
    caption: &str,
) -> Result<Vec<Vec<usize>>, String> {
    let chars = caption.chars().count();
    if chars > limits.max_caption_chars as usize {
        return Err(format!(
            "the caption is {chars} characters long; the server accepts at most {}",
            limits.max_caption_chars
        ));
    }
    let budget = limits
        .max_upload_bytes
        .saturating_sub(FORM_OVERHEAD + (label.len() + caption.len()) as u64);
    // Names may be escaped in the part's header: up to 3 bytes per byte.
    let cost = |f: &Picked| f.bytes + PART_OVERHEAD + 3 * f.name.len() as u64;
    let too_large: Vec<String> = files
        .iter()
        .filter(|f| cost(f) > budget)
        .map(|f| format!("{} ({})", f.name, mib(f.bytes)))
        .collect();
    if !too_large.is_empty() {
        return Err(format!(
            "too large to send: {}; the server accepts at most {} per upload",
            too_large.join(", "),
            mib(limits.max_upload_bytes)
        ));
    }
    let max_files = limits.max_files.max(1) as usize;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (i, f) in files.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if g.len() < max_files && used + cost(f) <= budget => {
                g.push(i);
                used += cost(f);
            }
            _ => {
                groups.push(vec![i]);
                used = cost(f);
            }
        }
    }
    Ok(groups)
}

/// Why the server would refuse `name` as the uploader (the api's rule: 1-64 letters, digits,
/// spaces or `_-.@`, any script), or `None`; an empty name is sent as none.
pub fn uploader_problem(name: &str) -> Option<String> {
    let ok = name.chars().count() <= UPLOADER_MAX_CHARS
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | ' '));
    (!ok).then(|| {
        format!("your name may have at most {UPLOADER_MAX_CHARS} letters, digits, spaces or _-.@")
    })
}

/// Bytes in MiB, for people.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
