//! The HTTP delivery target: POST the original body, byte for byte, to the
//! route's `url`, signed with Standard Webhooks headers.
//!
//! Request headers, in this order:
//! - `content-type` from the original request (default `application/json`);
//! - `webhook-id` = `dlv_<delivery id>` (the same on every retry),
//!   `webhook-timestamp` = the attempt's Unix seconds and, when the route has a
//!   secret, `webhook-signature` (`v1,<base64 HMAC-SHA256>` of `id.ts.body`);
//! - `appliance-provider`, `appliance-event-type`, `appliance-event-id`,
//!   `appliance-attempt`, `user-agent: appliance/<version>`;
//! - the route's extra `headers`: they may replace `content-type` or
//!   `user-agent`, but never the `webhook-*` / `appliance-*` headers above,
//!   `host`, `content-length` or a hop-by-hop header (those entries are skipped);
//! - each `forward_headers` name copied (every value) from the original
//!   request when present, unless it is hop-by-hop, `host`, `content-length`,
//!   a value the store redacted (`[redacted]`), or a name already set above.
//!
//! Outcome rules: 2xx = `Delivered`; 410 = `GiveUp`; 429 and 503 = `Retry`
//! with `retry_after` from a parseable `Retry-After` (delta-seconds or
//! HTTP-date, clamped to [1s, 1h]), else `None`; 3xx = `Retry` ("redirect to
//! ...": redirects are never followed, receivers must answer directly); any
//! other status = `Retry` ("HTTP <code>"); no response within the route's
//! timeout = `Retry` ("timeout after <d>"); a connection error = `Retry` with
//! a short reason ("connection refused"), never the URL or a secret.
//!
//! The timeout bounds sending the request and receiving the response head.
//! Once a status is known it decides the verdict; the excerpt of the response
//! body (at most `EXCERPT_MAX` bytes, read chunk by chunk and never buffered
//! beyond that) is then read within what is left of the timeout, and whatever
//! arrived by then is kept.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use super::attempt::{Attempt, EXCERPT_MAX, Job, Verdict};
use crate::verify::{Secret, standard_webhooks};
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

/// `user-agent` of every forward.
pub const USER_AGENT_VALUE: &str = concat!("appliance/", env!("CARGO_PKG_VERSION"));
const DEFAULT_CONTENT_TYPE: &str = "application/json";
/// The value the store keeps in place of a credential header.
const REDACTED: &str = "[redacted]";
/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the ones the client computes itself.
const NEVER_COPIED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];
/// Longest `error` kept on an attempt.
const ERROR_MAX: usize = 200;
const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// One route's HTTP target.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    url: String,
    secret: Option<Secret>,
    headers: Vec<(String, String)>,
    /// Lowercase header names.
    forward_headers: Vec<String>,
    timeout: Duration,
}

/// What the request produced, before timing is added.
struct Outcome {
    status_code: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
    verdict: Verdict,
}

impl Outcome {
    fn failed(error: String) -> Outcome {
        Outcome {
            status_code: None,
            error: Some(error),
            excerpt: None,
            verdict: Verdict::Retry { retry_after: None },
        }
    }
}

impl HttpTarget {
    pub fn new(
        url: String,
        secret: Option<Secret>,
        headers: Vec<(String, String)>,
        forward_headers: Vec<String>,
        timeout: Duration,
    ) -> HttpTarget {
        HttpTarget {
            url,
            secret,
            headers,
            forward_headers: forward_headers
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            timeout,
        }
    }

    /// One attempt: POST `job` and classify the answer (see the module doc).
    /// `now_secs` is the `webhook-timestamp` (Unix seconds).
    pub async fn deliver(&self, client: &reqwest::Client, job: &Job, now_secs: i64) -> Attempt {
        let at_ms = crate::store::now_ms();
        let started = Instant::now();
        let outcome = self.run(client, job, now_secs).await;
        Attempt {
            at_ms,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status_code: outcome.status_code,
            exit_code: None,
            error: outcome.error,
            response_excerpt: outcome.excerpt,
            verdict: outcome.verdict,
        }
    }

    async fn run(&self, client: &reqwest::Client, job: &Job, now_secs: i64) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let request = client
            .post(&self.url)
            .headers(self.request_headers(job, now_secs))
            .body(job.body.clone());
        let mut response = match tokio::time::timeout_at(deadline, request.send()).await {
            Err(_) => return Outcome::failed(timeout_error(self.timeout)),
            Ok(Err(e)) => return Outcome::failed(send_error(&e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = read_excerpt(&mut response, deadline).await;
        let (verdict, error) = classify(status, retry_after, location);
        Outcome {
            status_code: Some(status.as_u16()),
            error,
            excerpt: (!body.is_empty()).then(|| excerpt(&body, EXCERPT_MAX)),
            verdict,
        }
    }

    /// Every header of the forward, in the order of the module doc.
    fn request_headers(&self, job: &Job, now_secs: i64) -> HeaderMap {
        let mut map = HeaderMap::new();
        let content_type = original(job, "content-type")
            .find_map(|v| HeaderValue::from_str(v).ok())
            .unwrap_or(HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
        map.insert(CONTENT_TYPE, content_type);

        let id = job.webhook_id();
        let signed = match &self.secret {
            Some(secret) => standard_webhooks::signature_headers(secret, &id, now_secs, &job.body),
            None => vec![
                ("webhook-id".to_owned(), id),
                ("webhook-timestamp".to_owned(), now_secs.to_string()),
            ],
        };
        let attempt = job.attempt.to_string();
        let ours = signed.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain([
            ("appliance-provider", job.provider.as_str()),
            ("appliance-event-type", job.event_type.as_str()),
            ("appliance-event-id", job.event_id.as_str()),
            ("appliance-attempt", attempt.as_str()),
        ]);
        for (name, value) in ours {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                map.insert(name, header_value(value));
            }
        }
        map.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));

        for (name, value) in &self.headers {
            let lower = name.trim().to_ascii_lowercase();
            if reserved(&lower) || NEVER_COPIED.contains(&lower.as_str()) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(lower.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                map.insert(n, v);
            }
        }

        let already_set: Vec<HeaderName> = map.keys().cloned().collect();
        let connection_listed = connection_tokens(job);
        for wanted in &self.forward_headers {
            if NEVER_COPIED.contains(&wanted.as_str()) || connection_listed.contains(wanted) {
                continue;
            }
            let Ok(name) = HeaderName::from_bytes(wanted.as_bytes()) else {
                continue;
            };
            if already_set.contains(&name) {
                continue;
            }
            for value in original(job, wanted) {
                if value.trim() == REDACTED {
                    continue;
                }
                if let Ok(v) = HeaderValue::from_str(value) {
                    map.append(name.clone(), v);
                }
            }
        }
        map
    }
}

/// Names the target owns: the route's extra headers cannot replace them.
fn reserved(lower: &str) -> bool {
    lower.starts_with("webhook-") || lower.starts_with("appliance-")
}

/// Every value of the original header `name` (case-insensitive).
fn original<'a>(job: &'a Job, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    job.headers
        .iter()
        .filter(move |(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Names listed in the original `Connection` header: hop-by-hop too.
fn connection_tokens(job: &Job) -> Vec<String> {
    original(job, "connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A header value from event metadata (provider, event id and type come from
/// the sender): characters a header cannot carry (controls) become `_`.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static(""))
    })
}

fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    location: Option<String>,
) -> (Verdict, Option<String>) {
    let code = status.as_u16();
    let retry = |retry_after| Verdict::Retry { retry_after };
    if status.is_success() {
        (Verdict::Delivered, None)
    } else if code == 410 {
        (Verdict::GiveUp, Some("HTTP 410".to_owned()))
    } else if code == 429 || code == 503 {
        (retry(retry_after), Some(format!("HTTP {code}")))
    } else if status.is_redirection()
        && let Some(to) = location
    {
        (retry(None), Some(clip(format!("redirect to {to}"))))
    } else {
        (retry(None), Some(format!("HTTP {code}")))
    }
}

/// Up to `EXCERPT_MAX` bytes of the body, reading until then or the
/// deadline; the rest of the body is never read (the connection is dropped).
async fn read_excerpt(response: &mut reqwest::Response, deadline: tokio::time::Instant) -> Vec<u8> {
    let mut kept = Vec::new();
    while kept.len() < EXCERPT_MAX {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = EXCERPT_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
            }
            // end of body, a broken body, or out of time: keep what came
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
        }
    }
    kept
}

/// The start of `bytes` as text of at most `max` bytes: a UTF-8 sequence cut
/// at the end is dropped, invalid bytes become U+FFFD (and the result is cut
/// again, on a character boundary, should that make it longer than `max`).
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    let mut head = bytes.get(..max).unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(head)
        && e.error_len().is_none()
    {
        // the text ends inside a character: drop its first bytes
        head = head.get(..e.valid_up_to()).unwrap_or(head);
    }
    let mut text = String::from_utf8_lossy(head).into_owned();
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        text.truncate(cut);
    }
    text
}

/// `Retry-After` as delta-seconds or an HTTP-date, clamped to [1s, 1h]; a
/// date in the past gives 1s. None when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // all digits: too large for u64 is still "very long"
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let ahead = at.duration_since(now).unwrap_or(Duration::ZERO);
        // whole seconds, rounded up
        let secs = ahead
            .as_secs()
            .saturating_add(u64::from(ahead.subsec_nanos() > 0));
        Duration::from_secs(secs)
    };
    Some(wait.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX))
}

/// The client shared by every HTTP target: rustls, no proxy from the
/// environment, no redirects followed, idle connections closed after 30s.
///
/// # Panics
/// When the TLS backend cannot be initialised (see [`try_client`]), which
/// does not depend on any input.
#[allow(clippy::expect_used)]
pub fn client() -> reqwest::Client {
    try_client().expect("cannot initialise the HTTP client (TLS backend)")
}

/// [`client`], reporting a failure to initialise the TLS backend.
pub fn try_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(USER_AGENT_VALUE)
        .build()
}

/// "timeout after 10s" / "timeout after 300ms".
pub(crate) fn timeout_error(timeout: Duration) -> String {
    format!("timeout after {}", human_duration(timeout))
}

/// Whole seconds as "10s", anything else in milliseconds ("1500ms").
pub(crate) fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

/// A short reason for a request that got no response. Built from the error's
/// sources only: reqwest's own message carries the URL, which may hold a
/// credential.
fn send_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".to_owned();
    }
    let mut innermost = None;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return clip(io_reason(io));
        }
        innermost = Some(s);
        source = s.source();
    }
    let detail = innermost.map(|s| s.to_string());
    let reason = match (detail, e.is_builder(), e.is_connect()) {
        (Some(d), true, _) => format!("invalid request: {d}"),
        (None, true, _) => "invalid request".to_owned(),
        (Some(d), false, true) => format!("connection failed: {d}"),
        (None, false, true) => "connection failed".to_owned(),
        (Some(d), false, false) => d,
        (None, false, false) => "request failed".to_owned(),
    };
    clip(reason)
}

fn io_reason(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => "connection refused".to_owned(),
        K::ConnectionReset => "connection reset".to_owned(),
        K::ConnectionAborted => "connection aborted".to_owned(),
        K::TimedOut => "connect timed out".to_owned(),
        K::HostUnreachable => "host unreachable".to_owned(),
        K::NetworkUnreachable => "network unreachable".to_owned(),
        K::AddrNotAvailable => "address not available".to_owned(),
        K::UnexpectedEof => "connection closed".to_owned(),
        _ => io.to_string(),
    }
}

/// At most `ERROR_MAX` bytes, on a character boundary.
fn clip(mut text: String) -> String {
    if text.len() > ERROR_MAX {
        let mut cut = ERROR_MAX;
        while !text.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Bytes;
    use axum::http::StatusCode as Code;
    use axum::routing::post;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

    async fn serve(app: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// A receiver at `/hook` that records each request and answers `status`,
    /// with `extra` headers and `body`.
    async fn receiver(
        status: u16,
        extra: Vec<(&'static str, String)>,
        body: &'static str,
    ) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, bytes: Bytes| {
                let record = record.clone();
                let extra = extra.clone();
                async move {
                    record.lock().unwrap().push((headers, bytes));
                    let mut h = HeaderMap::new();
                    for (k, v) in extra {
                        h.insert(k, v.parse().unwrap());
                    }
                    (Code::from_u16(status).unwrap(), h, body)
                }
            }),
        );
        let addr = serve(app).await;
        (format!("http://{addr}/hook"), seen)
    }

    fn job(attempt: u32) -> Job {
        Job {
            delivery_id: 42,
            attempt,
            provider: "stripe".into(),
            route: "stripe.0".into(),
            event_id: "evt_1".into(),
            event_type: "payment_intent.succeeded".into(),
            body: b"{\"id\":\"evt_1\",\"bin\":\"\xff\xfe\"}".to_vec(),
            headers: vec![
                (
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                ),
                ("stripe-signature".into(), "[redacted]".into()),
                ("x-request-id".into(), "req-7".into()),
                ("x-multi".into(), "one".into()),
                ("X-Multi".into(), "two".into()),
                ("host".into(), "example.com".into()),
                ("connection".into(), "keep-alive, x-hop".into()),
                ("x-hop".into(), "hop".into()),
                ("webhook-id".into(), "msg_from_the_provider".into()),
            ],
        }
    }

    fn now_secs() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn plain(url: &str, timeout: Duration) -> HttpTarget {
        HttpTarget::new(url.to_owned(), None, vec![], vec![], timeout)
    }

    const LONG: Duration = Duration::from_secs(30);

    fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn delivered_signed_with_all_headers_and_stable_id() {
        let (url, seen) = receiver(200, vec![], "ok").await;
        let secret = Secret(standard_webhooks::format_secret(b"downstream key").into_bytes());
        let target = HttpTarget::new(
            url,
            Some(secret.clone()),
            vec![
                ("X-Route".into(), "payments".into()),
                ("Authorization".into(), "Bearer downstream".into()),
                ("webhook-signature".into(), "v1,forged".into()),
                ("Host".into(), "evil.example".into()),
            ],
            vec![
                "X-Request-Id".into(),
                "stripe-signature".into(),
                "x-multi".into(),
                "host".into(),
                "connection".into(),
                "x-hop".into(),
                "x-absent".into(),
                "webhook-id".into(),
            ],
            LONG,
        );
        let client = client();
        let now = now_secs();
        let first = target.deliver(&client, &job(1), now).await;
        assert_eq!(first.verdict, Verdict::Delivered, "{first:?}");
        assert_eq!(first.status_code, Some(200));
        assert_eq!(first.error, None);
        assert_eq!(first.exit_code, None);
        assert_eq!(first.response_excerpt.as_deref(), Some("ok"));
        assert!(first.at_ms > 0 && first.duration_ms >= 0);
        let second = target.deliver(&client, &job(2), now + 5).await;
        assert_eq!(second.verdict, Verdict::Delivered);

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (i, (h, body)) in seen.iter().enumerate() {
            assert_eq!(&body[..], &job(1).body[..], "body byte for byte");
            let ts = now + 5 * i as i64;
            standard_webhooks::check_signature(
                h,
                body,
                std::slice::from_ref(&secret),
                ts,
                Duration::from_secs(300),
            )
            .expect("receiver verifies our signature");
            assert_eq!(h.get_all("webhook-signature").iter().count(), 1);
            assert_eq!(header(h, "webhook-id"), Some("dlv_42"));
            assert_eq!(header(h, "webhook-timestamp"), Some(&*ts.to_string()));
            assert_eq!(
                header(h, "content-type"),
                Some("application/json; charset=utf-8")
            );
            assert_eq!(header(h, "appliance-provider"), Some("stripe"));
            assert_eq!(
                header(h, "appliance-event-type"),
                Some("payment_intent.succeeded")
            );
            assert_eq!(header(h, "appliance-event-id"), Some("evt_1"));
            assert_eq!(header(h, "appliance-attempt"), Some(&*(i + 1).to_string()));
            assert_eq!(header(h, "user-agent"), Some(USER_AGENT_VALUE));
            assert_eq!(header(h, "x-route"), Some("payments"));
            assert_eq!(header(h, "authorization"), Some("Bearer downstream"));
            assert_eq!(header(h, "x-request-id"), Some("req-7"));
            let multi: Vec<_> = h.get_all("x-multi").iter().collect();
            assert_eq!(multi, ["one", "two"]);
            assert!(
                h.get("stripe-signature").is_none(),
                "redacted not forwarded"
            );
            assert!(h.get("x-hop").is_none(), "connection-listed not forwarded");
            assert!(h.get("connection").is_none());
            assert!(h.get("x-absent").is_none());
            assert!(header(h, "host").unwrap().starts_with("127.0.0.1:"));
        }
    }

    #[tokio::test]
    async fn no_secret_no_signature_default_content_type() {
        let (url, seen) = receiver(204, vec![], "").await;
        let mut j = job(1);
        j.headers.clear();
        j.event_id = "evt\n2".into(); // a control character cannot go in a header
        let a = plain(&url, LONG)
            .deliver(&client(), &j, 1_700_000_000)
            .await;
        assert_eq!(a.verdict, Verdict::Delivered);
        assert_eq!(a.status_code, Some(204));
        assert_eq!(a.response_excerpt, None);
        let seen = seen.lock().unwrap();
        let (h, _) = &seen[0];
        assert!(h.get("webhook-signature").is_none());
        assert_eq!(header(h, "webhook-id"), Some("dlv_42"));
        assert_eq!(header(h, "webhook-timestamp"), Some("1700000000"));
        assert_eq!(header(h, "content-type"), Some("application/json"));
        assert_eq!(header(h, "appliance-event-id"), Some("evt_2"));
    }

    #[tokio::test]
    async fn server_error_is_retried_with_excerpt() {
        let (url, _) = receiver(500, vec![], "database is down").await;
        let a = plain(&url, LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.status_code, Some(500));
        assert_eq!(a.error.as_deref(), Some("HTTP 500"));
        assert_eq!(a.response_excerpt.as_deref(), Some("database is down"));
    }

    #[tokio::test]
    async fn gone_gives_up() {
        let (url, _) = receiver(410, vec![], "").await;
        let a = plain(&url, LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::GiveUp);
        assert_eq!(a.status_code, Some(410));
    }

    #[tokio::test]
    async fn other_4xx_is_retried_without_retry_after() {
        let (url, _) = receiver(400, vec![("retry-after", "5".into())], "").await;
        let a = plain(&url, LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.error.as_deref(), Some("HTTP 400"));
    }

    #[tokio::test]
    async fn retry_after_seconds_date_and_clamps() {
        let cases: Vec<(u16, String, Option<Duration>)> = vec![
            (429, "2".into(), Some(Duration::from_secs(2))),
            (503, "99999".into(), Some(Duration::from_secs(3600))),
            (429, "0".into(), Some(Duration::from_secs(1))),
            (503, "soon".into(), None),
        ];
        for (status, value, want) in cases {
            let (url, _) = receiver(status, vec![("retry-after", value.clone())], "").await;
            let a = plain(&url, LONG)
                .deliver(&client(), &job(1), now_secs())
                .await;
            assert_eq!(
                a.verdict,
                Verdict::Retry { retry_after: want },
                "{status} {value}"
            );
            assert_eq!(a.error, Some(format!("HTTP {status}")));
        }
        // an HTTP-date two minutes ahead
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let (url, _) = receiver(503, vec![("retry-after", date)], "").await;
        let a = plain(&url, LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        let Verdict::Retry {
            retry_after: Some(d),
        } = a.verdict
        else {
            panic!("{a:?}")
        };
        assert!((60..=120).contains(&d.as_secs()), "{d:?}");
        // no Retry-After at all
        let (url, _) = receiver(429, vec![], "").await;
        let a = plain(&url, LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
    }

    #[test]
    fn parse_retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_retry_after("2", now), secs(2));
        assert_eq!(parse_retry_after(" 120 ", now), secs(120));
        assert_eq!(parse_retry_after("0", now), secs(1));
        assert_eq!(parse_retry_after("99999", now), secs(3600));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            secs(3600)
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&date, now), secs(90));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), secs(1));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(86_400));
        assert_eq!(parse_retry_after(&far, now), secs(3600));
        for bad in ["", "-5", "1.5", "+3", "soon", "Wed, 99 Foo 2024"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let (url, seen) = receiver(302, vec![("location", "/elsewhere".into())], "").await;
        let a = plain(&url, LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.status_code, Some(302));
        assert_eq!(a.error.as_deref(), Some("redirect to /elsewhere"));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn receiver_that_never_answers_times_out() {
        let app = Router::new().route("/hook", post(std::future::pending::<()>));
        let addr = serve(app).await;
        let target = plain(&format!("http://{addr}/hook"), Duration::from_millis(300));
        let a = target.deliver(&client(), &job(1), now_secs()).await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.error.as_deref(), Some("timeout after 300ms"));
        assert_eq!(a.status_code, None);
        assert!(a.duration_ms >= 300, "{a:?}");
    }

    #[tokio::test]
    async fn connection_refused_is_retried_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://user:hunter2@{addr}/hook?token=hunter2");
        let a = plain(&url, LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.error.as_deref(), Some("connection refused"));
        assert_eq!(a.status_code, None);
    }

    #[tokio::test]
    async fn bad_url_and_unknown_host_are_short_retries() {
        let a = plain("not a url", LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        let e = a.error.unwrap();
        assert!(e.starts_with("invalid request"), "{e}");
        assert!(e.len() <= ERROR_MAX + 3);
        let a = plain("http://hunter2.invalid/x", Duration::from_secs(5))
            .deliver(&client(), &job(1), now_secs())
            .await;
        let e = a.error.unwrap();
        assert!(!e.contains("http://"), "{e}");
        assert!(e.len() <= ERROR_MAX + 3, "{e}");
    }

    /// A raw HTTP/1.1 server whose 200 body never ends: only a reader that
    /// stops at the cap can finish.
    #[tokio::test]
    async fn endless_body_excerpt_is_capped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0);
                head.extend_from_slice(&buf[..n]);
            }
            let header =
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
            sock.write_all(header.as_bytes()).await.unwrap();
            let chunk = format!("{:x}\r\n{}\r\n", 1000, "é".repeat(500));
            while sock.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let a = plain(&format!("http://{addr}/"), LONG)
            .deliver(&client(), &job(1), now_secs())
            .await;
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        assert_eq!(a.error, None);
        let text = a.response_excerpt.unwrap();
        assert!(text.len() <= EXCERPT_MAX);
        assert!(text.len() >= EXCERPT_MAX - 1, "{}", text.len());
        assert!(text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn excerpt_is_bounded_and_lossy() {
        assert_eq!(excerpt(b"hello", 10), "hello");
        assert_eq!(excerpt(b"hello", 3), "hel");
        // a cut inside a character drops it
        assert_eq!(excerpt("aé".as_bytes(), 2), "a");
        // invalid bytes become U+FFFD, still within the limit
        let lossy = excerpt(&[0xff; 10], 10);
        assert!(lossy.len() <= 10);
        assert!(lossy.chars().all(|c| c == '\u{fffd}'));
        assert_eq!(excerpt(b"", 10), "");
    }

    #[test]
    fn durations_and_clipping() {
        assert_eq!(human_duration(Duration::from_secs(10)), "10s");
        assert_eq!(human_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(clip("x".repeat(500)).len(), ERROR_MAX + 3);
        assert_eq!(clip("short".into()), "short");
    }
}
