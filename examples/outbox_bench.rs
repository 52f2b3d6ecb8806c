//! Outbox benchmark for `BENCHMARKS.md`: plays the team's receiver (a local
//! HTTP server that answers 200 at once) and measures
//! 1. the delay from sending an event to its first delivery attempt arriving,
//!    with the outbox idle (events sent one at a time, 5 ms apart), and
//! 2. deliveries/s when a burst of events is accepted at once.
//!
//! The appliance under test must route `--url`'s provider to
//! `http://127.0.0.1:<--receiver-port>/hook` (bench/run.sh writes such a config).
//! Prints one JSON line per phase.

use appliance::verify::{Scheme, Secret};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[derive(Default)]
struct Seen {
    /// (sent_us from the body, arrival_us)
    arrivals: Vec<(i64, i64)>,
}

async fn receiver(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let arrival = now_us();
                        let sent = std::str::from_utf8(&body)
                            .ok()
                            .and_then(|s| s.split("\"sent_us\":").nth(1))
                            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                            .and_then(|s| s.parse::<i64>().ok())
                            .unwrap_or(0);
                        seen.lock().unwrap().arrivals.push((sent, arrival));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

struct Sender {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
    path: String,
    secret: Secret,
    scheme: Scheme,
}

impl Sender {
    async fn connect(hostport: &str, path: &str, secret: &str) -> Sender {
        let stream = TcpStream::connect(hostport)
            .await
            .expect("connect to appliance");
        stream.set_nodelay(true).ok();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        Sender {
            sender,
            host: hostport.to_string(),
            path: path.to_string(),
            secret: Secret(secret.as_bytes().to_vec()),
            scheme: Scheme::StandardWebhooks {
                tolerance: Duration::from_secs(300),
            },
        }
    }

    async fn send(&mut self, n: u64) {
        let body = format!(
            "{{\"type\":\"bench.delivery\",\"data\":{{\"n\":{n},\"sent_us\":{},\"pad\":\"{}\"}}}}",
            now_us(),
            "x".repeat(1300)
        );
        let nonce = format!("d{n}-{:08x}", rand::random::<u32>());
        let signed = self
            .scheme
            .sign(
                &self.secret,
                None,
                Some(body.as_bytes()),
                now_us() / 1_000_000,
                &nonce,
            )
            .expect("sign");
        let mut req = hyper::Request::post(&self.path).header("host", &self.host);
        for (k, v) in &signed.headers {
            req = req.header(k, v);
        }
        let resp = self
            .sender
            .send_request(req.body(Full::new(Bytes::from(signed.body))).unwrap())
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "the appliance refused an event");
        let _ = resp.into_body().collect().await;
    }
}

#[tokio::main]
async fn main() {
    let mut url = String::from("http://127.0.0.1:8080/webhooks/bench");
    let mut secret = String::new();
    let mut port: u16 = 18090;
    let mut burst: u64 = 20_000;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => url = v,
            "--secret" => secret = v,
            "--receiver-port" => port = v.parse().expect("port"),
            "--events" => burst = v.parse().expect("count"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (hostport, path) = rest.split_at(rest.find('/').expect("a path"));

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind receiver port");
    tokio::spawn(receiver(listener, seen.clone()));

    // Phase 1: idle outbox, one event at a time.
    let mut s = Sender::connect(hostport, path, &secret).await;
    let n1 = 500u64;
    for n in 0..n1 {
        s.send(n).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().arrivals.len() < n1 as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut delays: Vec<i64> = seen
        .lock()
        .unwrap()
        .arrivals
        .iter()
        .map(|(sent, arr)| arr - sent)
        .collect();
    delays.sort_unstable();
    let pct = |v: &[i64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    println!(
        "{{\"phase\":\"idle_first_attempt_delay\",\"events\":{},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        delays.len(),
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        pct(&delays, 1.0)
    );

    // Phase 2: a burst over 16 connections; deliveries/s while draining.
    seen.lock().unwrap().arrivals.clear();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..16u64 {
        let (hostport, path, secret) = (hostport.to_string(), path.to_string(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Sender::connect(&hostport, &path, &secret).await;
            let mut n = c;
            while n < burst {
                s.send(1_000_000 + n).await;
                n += 16;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepted_s = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.lock().unwrap().arrivals.len() < burst as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total_s = t0.elapsed().as_secs_f64();
    let got = seen.lock().unwrap().arrivals.len();
    println!(
        "{{\"phase\":\"burst\",\"events\":{burst},\"delivered\":{got},\"accept_s\":{accepted_s:.2},\"all_delivered_s\":{total_s:.2},\"deliveries_per_s\":{:.0}}}",
        got as f64 / total_s
    );
}
