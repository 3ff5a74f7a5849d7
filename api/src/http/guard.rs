//! What every request passes before a handler runs: who the client is (the peer address, or
//! the address a trusted reverse proxy forwarded; IPv6 clients keyed by their /64), per-client
//! quotas (requests per minute on uploads and predictions, upload bytes and files per hour;
//! admin requests exempt), a global cap on requests in flight, a memory budget for request
//! bodies held in memory, and a deadline per request.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::extract::{Shared, check_bearer};
use crate::{Error, Result};

/// The client a request comes from, as quotas and caps count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The address quotas are keyed by (an IPv6 address reduced to its /64).
    pub key: IpAddr,
    /// A pseudonym of `key` stored with uploads (hex; the address itself is not stored).
    pub tag: String,
}

impl Client {
    /// The client for a (forwarded or peer) address.
    pub fn of(ip: IpAddr) -> Self {
        let key = rate_key(ip);
        let digest = Sha256::digest(format!("edgeml-client:{key}").as_bytes());
        Client {
            key,
            tag: hex::encode(&digest[..12]),
        }
    }
}

/// IPv4 addresses as they are (IPv4-mapped IPv6 too); IPv6 addresses by their /64, the
/// smallest block one subscriber usually gets.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

/// Reverse proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`: addresses or CIDR
/// blocks).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parse `10.0.0.0/8`, `127.0.0.1`, `fd00::/8`, …
    pub fn parse(list: &[String]) -> Result<Self> {
        let mut out = Vec::new();
        for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| {
                Error::Config(format!(
                    "TRUSTED_PROXIES: {item:?} is not an address or CIDR block"
                ))
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                    Error::Config(format!("TRUSTED_PROXIES: bad prefix length in {item:?}"))
                })?,
                None => max,
            };
            out.push((ip, bits));
        }
        Ok(TrustedProxies(out))
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|&(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// The client's address: the peer, or when the peer is a trusted proxy, the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy (entries left of it could
    /// have been written by the client).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        hops.into_iter()
            .rev()
            .find(|ip| !self.contains(*ip))
            .unwrap_or(peer)
    }
}

/// Per-client quotas (GCRA limiters keyed by [`Client::key`]).
pub struct Quotas {
    /// Upload requests.
    pub uploads: DefaultKeyedRateLimiter<IpAddr>,
    /// Prediction requests.
    pub predicts: DefaultKeyedRateLimiter<IpAddr>,
    /// Upload bytes, in MiB (declared body length, rounded up).
    pub upload_mib: DefaultKeyedRateLimiter<IpAddr>,
    /// Uploaded files.
    pub upload_files: DefaultKeyedRateLimiter<IpAddr>,
}

/// How much of each quota a client gets.
#[derive(Debug, Clone, Copy)]
pub struct QuotaConfig {
    /// Upload requests per minute (and the burst).
    pub uploads_per_min: (u32, u32),
    /// Prediction requests per minute (and the burst).
    pub predicts_per_min: (u32, u32),
    /// Upload MiB per hour.
    pub upload_mib_per_hour: u32,
    /// Uploaded files per hour.
    pub upload_files_per_hour: u32,
}

fn nz(n: u32, what: &str) -> Result<NonZeroU32> {
    NonZeroU32::new(n).ok_or_else(|| Error::Config(format!("{what} must be positive")))
}

impl Quotas {
    /// Limiters for a configuration.
    pub fn new(c: QuotaConfig) -> Result<Self> {
        let per_min = |(rate, burst): (u32, u32), what: &str| -> Result<_> {
            Ok(RateLimiter::keyed(
                Quota::per_minute(nz(rate, what)?).allow_burst(nz(burst, what)?),
            ))
        };
        let per_hour = |n: u32, what: &str| -> Result<_> {
            let n = nz(n, what)?;
            Ok(RateLimiter::keyed(Quota::per_hour(n).allow_burst(n)))
        };
        Ok(Quotas {
            uploads: per_min(c.uploads_per_min, "UPLOAD_RATE_PER_MIN / UPLOAD_BURST")?,
            predicts: per_min(c.predicts_per_min, "PREDICT_RATE_PER_MIN / PREDICT_BURST")?,
            upload_mib: per_hour(c.upload_mib_per_hour, "UPLOAD_MB_PER_HOUR")?,
            upload_files: per_hour(c.upload_files_per_hour, "UPLOAD_FILES_PER_HOUR")?,
        })
    }

    /// Forget clients whose quotas are full again (called periodically).
    pub fn forget_idle(&self) {
        for l in [
            &self.uploads,
            &self.predicts,
            &self.upload_mib,
            &self.upload_files,
        ] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Take `n` units of `limiter` for `key`, or the 429 to answer (with the wait in whole
/// seconds, rounded up).
pub fn take(
    limiter: &DefaultKeyedRateLimiter<IpAddr>,
    key: &IpAddr,
    n: u32,
    what: &str,
) -> Result<()> {
    let Some(n) = NonZeroU32::new(n) else {
        return Ok(());
    };
    match limiter.check_key_n(key, n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(Error::RateLimited(
                wait.as_secs() + 1,
                format!("{what}: quota exceeded for this client, retry later"),
            ))
        }
        Err(_) => Err(Error::TooLarge(format!(
            "{what}: one request asks for more than the whole quota ({n})"
        ))),
    }
}

/// Which per-client quota a route draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// Labeled uploads.
    Upload,
    /// Server-side predictions.
    Predict,
}

/// Work out the client and remember it in the request's extensions.
pub async fn identify(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let ip = st.trusted.client_ip(peer, req.headers());
    req.extensions_mut().insert(Client::of(ip));
    next.run(req).await
}

/// The client [`identify`] stored (the unspecified address when a test calls a handler
/// without it).
pub fn client_of(req: &Request) -> Client {
    req.extensions()
        .get::<Client>()
        .cloned()
        .unwrap_or_else(|| Client::of(IpAddr::from([0, 0, 0, 0])))
}

/// Per-client quota of a metered route; requests with the admin token are exempt.
pub async fn meter(
    State((st, route)): State<(Shared, Metered)>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(check_bearer(req.headers(), &st.admin_token), Ok(true)) {
        return next.run(req).await;
    }
    let client = client_of(&req);
    let q = &st.quotas;
    let checked = match route {
        Metered::Predict => take(&q.predicts, &client.key, 1, "predictions"),
        Metered::Upload => take(&q.uploads, &client.key, 1, "uploads").and_then(|()| {
            let mib = declared_length(req.headers()).map_or(1, |n| n.div_ceil(1 << 20).max(1));
            take(
                &q.upload_mib,
                &client.key,
                u32::try_from(mib).unwrap_or(u32::MAX),
                "upload MiB per hour",
            )
        }),
    };
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// A request's declared body length.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Shared admission limits.
pub struct Admission {
    /// Requests in flight on `/api` routes.
    pub requests: Arc<Semaphore>,
    /// MiB of request bodies that uploads and predictions may hold in memory at once.
    pub body_mib: Arc<Semaphore>,
    /// Largest body, in bytes (what a request without a declared length is charged).
    pub max_body: u64,
    /// How long a request may wait for body budget before it is turned away.
    pub wait: Duration,
}

/// Refuse at once (503 + Retry-After) when too many requests are in flight; otherwise run the
/// request with a deadline (408 past it). Streaming responses are bounded by their own rules
/// (the deadline covers producing the response head).
pub async fn admit(
    State((st, deadline)): State<(Shared, Duration)>,
    req: Request,
    next: Next,
) -> Response {
    let Ok(_slot) = st.admission.requests.clone().try_acquire_owned() else {
        return Error::Busy(1, "the server is at its limit of requests in flight".into())
            .into_response();
    };
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => Error::Timeout(format!(
            "the request took longer than {} s",
            deadline.as_secs()
        ))
        .into_response(),
    }
}

/// Hold the declared body size (a request without one is charged the maximum) against the
/// in-memory body budget while the request runs; when the budget stays exhausted for the
/// admission wait, 503 + Retry-After.
pub async fn body_budget(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let a = &st.admission;
    let bytes = declared_length(req.headers())
        .unwrap_or(a.max_body)
        .min(a.max_body);
    let mib = u32::try_from(bytes.div_ceil(1 << 20) + 1).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout(a.wait, a.body_mib.clone().acquire_many_owned(mib)).await;
    match permit {
        Ok(Ok(_held)) => next.run(req).await,
        _ => Error::Busy(
            5,
            "too many large requests are being received right now".into(),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(rate_key(a), rate_key(b));
        assert_ne!(rate_key(a), rate_key(c));
        assert_eq!(Client::of(a).tag, Client::of(b).tag);
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(rate_key(mapped), IpAddr::from([10, 0, 0, 7]));
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.1.2.3"),
        );
        let proxy = IpAddr::from([10, 0, 0, 1]);
        // Right-most untrusted hop: the address the first trusted proxy saw.
        assert_eq!(t.client_ip(proxy, &h), IpAddr::from([203, 0, 113, 9]));
        // From anyone else the header is ignored.
        let stranger = IpAddr::from([198, 51, 100, 1]);
        assert_eq!(t.client_ip(stranger, &h), stranger);
        assert_eq!(t.client_ip(proxy, &HeaderMap::new()), proxy);
        assert!(t.contains("::1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nonsense".into()]).is_err());
    }

    #[test]
    fn quotas_refuse_bursts_per_client_and_say_when_to_retry() {
        let q = Quotas::new(QuotaConfig {
            uploads_per_min: (60, 2),
            predicts_per_min: (60, 2),
            upload_mib_per_hour: 10,
            upload_files_per_hour: 10,
        })
        .unwrap();
        let a = IpAddr::from([10, 0, 0, 1]);
        assert!(take(&q.uploads, &a, 1, "uploads").is_ok());
        assert!(take(&q.uploads, &a, 1, "uploads").is_ok());
        match take(&q.uploads, &a, 1, "uploads") {
            Err(Error::RateLimited(secs, _)) => assert!((1..=2).contains(&secs), "{secs}"),
            other => panic!("{other:?}"),
        }
        assert!(take(&q.uploads, &IpAddr::from([10, 0, 0, 2]), 1, "uploads").is_ok());
        assert!(take(&q.upload_files, &a, 8, "files").is_ok());
        assert!(matches!(
            take(&q.upload_files, &a, 8, "files"),
            Err(Error::RateLimited(..))
        ));
        assert!(matches!(
            take(&q.upload_mib, &a, 11, "MiB"),
            Err(Error::TooLarge(_))
        ));
    }
}
