//! The dashboard in a real headless Chromium (through chromedriver): enter
//! the token, see a webhook appear live without reloading, open it, replay
//! it. The screenshot is kept at target/browser-test/dashboard.png.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them);
//! where they are absent the test says so and passes without running.

use crate::common::*;
use fantoccini::{ClientBuilder, Locator};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(20);

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_binary(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_events_and_replays() {
    let (Some(chromium), Some(chromedriver)) = (
        find_binary(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
        find_binary(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]),
    ) else {
        eprintln!(
            "SKIPPED browser test: chromium and chromedriver are not installed (apt-get install chromium chromium-driver; .ci/run does)"
        );
        return;
    };
    let rx = Receiver::start(|_, _| (200, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let app = TestApp::spawn_in(
        dir,
        &format!(
            "[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/p.secret\"\n[[providers.p.routes]]\nurl = \"{}\"\n",
            rx.url()
        ),
    )
    .await;

    // chromedriver on a free port; wait until it answers.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    eventually("chromedriver to listen", WAIT, || async {
        reqwest::get(format!("{webdriver}/status"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let c = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .expect("a chromium session");

    let result = async {
        c.goto(&app.url("/")).await?;
        // A token prompt, never data, until the token is given.
        let token = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("token"))
            .await?;
        assert!(c.find(Locator::Css(".event-row")).await.is_err());
        token.send_keys(&app.token).await?;
        c.find(Locator::Id("token-submit")).await?.click().await?;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Id("feed"))
            .await?;
        // The live stream is connected...
        let end = std::time::Instant::now() + WAIT;
        loop {
            let s = c.find(Locator::Id("conn-status")).await?.text().await?;
            if s.contains("live") {
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "stream never went live: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // ...so a webhook sent now appears without a reload.
        let req = sign(&app.config.providers[0].scheme, SECRET, now());
        let (s, v) = app.post("/webhooks/p", &req).await;
        assert_eq!(s, reqwest::StatusCode::OK);
        let id = v["id"].as_i64().unwrap();
        let row = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&format!(".event-row[data-event-id=\"{id}\"]")))
            .await?;
        std::fs::create_dir_all("target/browser-test").ok();
        std::fs::write("target/browser-test/dashboard.png", c.screenshot().await?).ok();
        row.click().await?;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Id("detail"))
            .await?;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Id("replay"))
            .await?
            .click()
            .await?;
        let result = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("replay-result"))
            .await?;
        let end = std::time::Instant::now() + WAIT;
        loop {
            let t = result.text().await?;
            if t.contains("1") {
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "replay result never shown: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::write("target/browser-test/detail.png", c.screenshot().await?).ok();
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = c.close().await;
    result.expect("browser steps");
    // The replay created a second delivery, which the receiver got.
    rx.wait_for(2, WAIT).await;
}
