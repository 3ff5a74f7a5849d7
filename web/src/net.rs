//! Calls to the api: JSON over `fetch`, errors as the api's `{error, detail}`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Why a call failed, in words for the page.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// HTTP status (0: no response: offline or the server is down).
    pub status: u16,
    /// The api's message (its `detail`, else its `error`), or the network failure.
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "HTTP {}: {}", self.status, self.message)
        }
    }
}

fn network(e: impl std::fmt::Debug) -> CallError {
    CallError {
        status: 0,
        message: format!("no connection to the server ({e:?})"),
    }
}

/// Turn an api error body into words.
pub fn error_message(status: u16, body: &str) -> CallError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
        #[serde(default)]
        detail: String,
    }
    let message = match serde_json::from_str::<Body>(body) {
        Ok(b) if !b.detail.is_empty() => b.detail,
        Ok(b) => b.error,
        Err(_) => body.chars().take(200).collect(),
    };
    CallError { status, message }
}

/// `method url` with an optional bearer token and JSON body; the response body as text.
pub async fn call_text(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<String, CallError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(network)?;
    if let Some(t) = token {
        headers
            .set("Authorization", &format!("Bearer {t}"))
            .map_err(network)?;
    }
    if let Some(b) = &body {
        headers
            .set("Content-Type", "application/json")
            .map_err(network)?;
        init.set_body(&wasm_bindgen::JsValue::from_str(b));
    }
    init.set_headers(&headers);
    let window = web_sys::window().ok_or_else(|| network("no window"))?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(network)?
        .dyn_into()
        .map_err(network)?;
    let text = JsFuture::from(resp.text().map_err(network)?)
        .await
        .map_err(network)?
        .as_string()
        .unwrap_or_default();
    if resp.ok() {
        Ok(text)
    } else {
        Err(error_message(resp.status(), &text))
    }
}

/// `GET url` as JSON.
pub async fn get<T: DeserializeOwned>(url: &str, token: Option<&str>) -> Result<T, CallError> {
    let text = call_text("GET", url, token, None).await?;
    parse(&text)
}

/// `POST url` with a JSON body, the answer as JSON.
pub async fn post<T: DeserializeOwned>(
    url: &str,
    token: Option<&str>,
    body: &impl Serialize,
) -> Result<T, CallError> {
    let body = serde_json::to_string(body).map_err(|e| CallError {
        status: 0,
        message: e.to_string(),
    })?;
    let text = call_text("POST", url, token, Some(body)).await?;
    parse(&text)
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T, CallError> {
    serde_json::from_str(text).map_err(|e| CallError {
        status: 0,
        message: format!("unexpected answer from the server: {e}"),
    })
}

/// Fetch a protected image with the token and return an object URL for `<img src>` (so the
/// token never goes into a URL).
pub async fn blob_url(url: &str, token: &str) -> Result<String, CallError> {
    let init = web_sys::RequestInit::new();
    let headers = web_sys::Headers::new().map_err(network)?;
    headers
        .set("Authorization", &format!("Bearer {token}"))
        .map_err(network)?;
    init.set_headers(&headers);
    let window = web_sys::window().ok_or_else(|| network("no window"))?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(network)?
        .dyn_into()
        .map_err(network)?;
    if !resp.ok() {
        return Err(CallError {
            status: resp.status(),
            message: "image not available".into(),
        });
    }
    let blob: web_sys::Blob = JsFuture::from(resp.blob().map_err(network)?)
        .await
        .map_err(network)?
        .dyn_into()
        .map_err(network)?;
    web_sys::Url::create_object_url_with_blob(&blob).map_err(network)
}

/// Local storage, when the browser allows it.
pub fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}
