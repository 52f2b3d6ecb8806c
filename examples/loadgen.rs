//! Load generator for `BENCHMARKS.md`: N keep-alive HTTP/1.1 connections,
//! each sending freshly signed Standard Webhooks events (unique ids, ~1.5 KB
//! bodies) back to back for a fixed time, recording every latency.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080/webhooks/default \
//!     --secret whsec_... --connections 64 --seconds 10
//! ```
//! Prints one JSON line: sent, accepted, duplicate, errors, events/s, p50/p90/p99/max (ms).

use appliance::verify::{Scheme, Secret};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

struct Args {
    url: String,
    secret: String,
    connections: usize,
    seconds: u64,
    body_size: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080/webhooks/default".into(),
        secret: String::new(),
        connections: 16,
        seconds: 10,
        body_size: 1500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => a.url = v,
            "--secret" => a.secret = v,
            "--connections" => a.connections = v.parse().expect("--connections N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            "--body-size" => a.body_size = v.parse().expect("--body-size BYTES"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.secret.is_empty(), "--secret whsec_... is required");
    a
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    duplicate: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

async fn connection(
    addr: String,
    host: String,
    path: String,
    secret: Secret,
    body_size: usize,
    conn_no: usize,
    until: Instant,
) -> Tally {
    let scheme = Scheme::StandardWebhooks {
        tolerance: Duration::from_secs(300),
    };
    let mut tally = Tally::default();
    let stream = TcpStream::connect(&addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let pad = "x".repeat(body_size.saturating_sub(120));
    let mut n: u64 = 0;
    while Instant::now() < until {
        n += 1;
        let nonce = format!("c{conn_no}-{n}-{:08x}", rand::random::<u32>());
        let body = format!(
            "{{\"type\":\"bench.event\",\"timestamp\":\"2026-11-27T00:00:00Z\",\"data\":{{\"n\":{n},\"conn\":{conn_no},\"pad\":\"{pad}\"}}}}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signed = scheme
            .sign(&secret, None, Some(body.as_bytes()), now, &nonce)
            .expect("sign");
        let mut req = hyper::Request::post(&path).header("host", &host);
        for (k, v) in &signed.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(signed.body)))
            .expect("request");
        let t0 = Instant::now();
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                tally
                    .latencies_us
                    .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                match (status.as_u16(), body) {
                    (200, Ok(b)) if b.windows(10).any(|w| w == b"\"accepted\"") => {
                        tally.accepted += 1
                    }
                    (200, Ok(_)) => tally.duplicate += 1,
                    _ => tally.errors += 1,
                }
            }
            Err(_) => {
                tally.errors += 1;
                break;
            }
        }
    }
    tally
}

#[tokio::main]
async fn main() {
    let a = args();
    let rest = a.url.strip_prefix("http://").expect("an http:// URL");
    let (hostport, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    let start = Instant::now();
    let until = start + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        tasks.push(tokio::spawn(connection(
            hostport.clone(),
            hostport.clone(),
            path.clone(),
            Secret(a.secret.clone().into_bytes()),
            a.body_size,
            c,
            until,
        )));
    }
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.expect("task");
        total.accepted += t.accepted;
        total.duplicate += t.duplicate;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
    }
    let elapsed = start.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if total.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((total.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        total.latencies_us[i] as f64 / 1000.0
    };
    println!(
        "{{\"connections\":{},\"seconds\":{:.1},\"sent\":{},\"accepted\":{},\"duplicate\":{},\"errors\":{},\"events_per_s\":{:.0},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        a.connections,
        elapsed,
        total.latencies_us.len(),
        total.accepted,
        total.duplicate,
        total.errors,
        total.accepted as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
}
