//! What handlers take from a request before they run: `Query`/`Path`/`Json` whose rejections
//! are the api's `{error, detail}` JSON, admin auth (`Authorization: Bearer <ADMIN_TOKEN>`,
//! compared in constant time), and multipart form reading with per-request limits.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Json, Multipart, Path, Query};
use axum::http::{HeaderMap, header, request::Parts};
use subtle::ConstantTimeEq;

use crate::images::{self, UploadFile};
use crate::state::AppState;
use crate::{Error, Result};

/// The state every handler gets.
pub type Shared = Arc<AppState>;

/// `Query` whose rejection is a 400 `{error, detail}`.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(Query), rejection(Error))]
pub struct Q<T>(pub T);

/// `Path` whose rejection is a 400 `{error, detail}`.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(Path), rejection(Error))]
pub struct P<T>(pub T);

/// `Json` whose rejection is a 400 (or 413) `{error, detail}`.
#[derive(axum::extract::FromRequest)]
#[from_request(via(Json), rejection(Error))]
pub struct J<T>(pub T);

/// Whether `given` is the admin token, in time independent of where they differ and of
/// their lengths (both are hashed to 32 bytes first).
pub fn token_matches(given: &str, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Check an `Authorization` header against the admin token: `Ok(false)` when absent, 401 when
/// it is not a bearer token, 403 when the token is wrong.
pub fn check_bearer(headers: &HeaderMap, token: &str) -> Result<bool> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(false);
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("Authorization must be 'Bearer <admin token>'".into())
        })?;
    if token_matches(given.trim(), token) {
        Ok(true)
    } else {
        Err(Error::Forbidden("wrong admin token".into()))
    }
}

/// An authenticated admin: the route answers 401 without the token, 403 with a wrong one.
#[derive(Debug, Clone)]
pub struct Admin;

impl FromRequestParts<Shared> for Admin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        if check_bearer(&parts.headers, &state.admin_token)? {
            Ok(Admin)
        } else {
            Err(Error::Unauthorized(
                "this route needs the admin token (Authorization: Bearer …)".into(),
            ))
        }
    }
}

/// Optional admin: no header → not admin; a wrong token is still refused.
#[derive(Debug, Clone, Copy)]
pub struct MaybeAdmin(pub bool);

impl FromRequestParts<Shared> for MaybeAdmin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        Ok(MaybeAdmin(check_bearer(
            &parts.headers,
            &state.admin_token,
        )?))
    }
}

/// A multipart form read whole: text fields by name, files in order.
pub struct Form {
    /// Text fields (each at most 1 KiB).
    pub fields: HashMap<String, String>,
    /// File fields, with validated names (an empty name becomes `upload`).
    pub files: Vec<UploadFile>,
}

/// Read a multipart body: only the `fields` the route documents (400 for any other), at most
/// `max_files` files (413 beyond), file names that cannot be mistaken for paths, text fields
/// of at most 1 KiB.
pub async fn read_form(mut mp: Multipart, fields: &[&str], max_files: usize) -> Result<Form> {
    let mut form = Form {
        fields: HashMap::new(),
        files: Vec::new(),
    };
    while let Some(field) = mp.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        if !fields.contains(&name.as_str()) {
            return Err(Error::BadRequest(format!(
                "unknown form field {name:?} (this route takes: {})",
                fields.join(", ")
            )));
        }
        match field.file_name().map(str::to_string) {
            Some(filename) => {
                if form.files.len() >= max_files {
                    return Err(Error::TooLarge(format!(
                        "at most {max_files} files per request"
                    )));
                }
                images::validate_filename(&filename)?;
                let bytes = field.bytes().await?;
                let filename = if filename.is_empty() {
                    "upload".to_string()
                } else {
                    filename
                };
                form.files.push(UploadFile { filename, bytes });
            }
            None => {
                let text = field.text().await?;
                // A box list (up to 100 boxes) is longer than a label or a caption.
                // A COCO document (up to 200 images' boxes) longer still.
                let cap = match name.as_str() {
                    "boxes" => 16 * 1024,
                    "annotations" => 1024 * 1024,
                    _ => 1024,
                };
                if text.len() > cap {
                    return Err(Error::BadRequest(format!("field {name:?} is too long")));
                }
                form.fields.insert(name, text);
            }
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(!check_bearer(&h, "t0ken-t0ken-t0ken").unwrap());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ken-t0ken-t0ken"),
        );
        assert!(check_bearer(&h, "t0ken-t0ken-t0ken").unwrap());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(matches!(
            check_bearer(&h, "t0ken-t0ken-t0ken"),
            Err(Error::Forbidden(_))
        ));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(
            check_bearer(&h, "t0ken-t0ken-t0ken"),
            Err(Error::Unauthorized(_))
        ));
    }

    #[test]
    fn constant_time_compare() {
        assert!(token_matches("secret-token", "secret-token"));
        assert!(!token_matches("secret-token", "secret-tokem"));
        assert!(!token_matches("short", "longer"));
    }
}
