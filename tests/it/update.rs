//! `appliance self-update` against a fake GitHub releases API on 127.0.0.1,
//! with release artifacts built and zipsign-signed here. Every run executes a
//! copy of the real binary in a temp dir, so the binary under test in
//! target/ is never replaced. No network but loopback.

use crate::common::BIN;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tempfile::TempDir;
use zipsign_api::SigningKey;

const OWNER: &str = "acme";
const REPO: &str = "appliance";
const CURRENT: &str = env!("CARGO_PKG_VERSION");
/// Seed of the release signing key the tests trust.
const RELEASE_KEY: [u8; 32] = [0x5a; 32];
/// Seed of a key nobody configured.
const OTHER_KEY: [u8; 32] = [0xa5; 32];
/// The "new release": a script, so the test can run what was installed.
const NEW_BIN: &[u8] = b"#!/bin/sh\necho appliance 9.9.9\n";

enum Signing {
    By([u8; 32]),
    Unsigned,
    /// Signed by RELEASE_KEY, then one byte of the archive flipped.
    Tampered,
}

struct FakeRelease {
    version: String,
    asset: String,
    bytes: Vec<u8>,
}

/// The asset name self_update matches: it contains the target triple.
fn asset_name(version: &str) -> String {
    format!("appliance-{version}-{}.tar.gz", self_update::get_target())
}

/// A `.tar.gz` holding one file, `appliance`, mode 0755.
fn tar_gz(exe: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(exe.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "appliance", exe).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// zipsign's `.tar.gz` signature, bound (as self_update checks it) to the
/// artifact's file name.
fn sign(unsigned: &[u8], seed: &[u8; 32], name: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    zipsign_api::sign::copy_and_sign_tar(
        &mut std::io::Cursor::new(unsigned),
        &mut out,
        &[SigningKey::from_bytes(seed)],
        Some(name.as_bytes()),
    )
    .unwrap();
    out.into_inner()
}

fn release(version: &str, signing: Signing) -> FakeRelease {
    let asset = asset_name(version);
    let unsigned = tar_gz(NEW_BIN);
    let bytes = match signing {
        Signing::By(seed) => sign(&unsigned, &seed, &asset),
        Signing::Unsigned => unsigned,
        Signing::Tampered => {
            let mut signed = sign(&unsigned, &RELEASE_KEY, &asset);
            // Inside the signed data (the signature is appended after it).
            signed[unsigned.len() / 2] ^= 0x01;
            signed
        }
    };
    FakeRelease {
        version: version.to_string(),
        asset,
        bytes,
    }
}

fn public_key(seed: &[u8; 32]) -> String {
    let key = SigningKey::from_bytes(seed).verifying_key();
    base64::engine::general_purpose::STANDARD.encode(key.to_bytes())
}

/// GitHub's releases API, as much of it as self_update uses: the listing,
/// `latest`, and assets that answer bytes to `Accept: application/octet-stream`
/// (JSON metadata otherwise, as GitHub does).
struct FakeGitHub {
    base: String,
    releases: Vec<FakeRelease>,
    /// Every request: "path?query accept".
    log: Mutex<Vec<String>>,
}

impl FakeGitHub {
    async fn start(releases: Vec<FakeRelease>) -> Arc<FakeGitHub> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(FakeGitHub {
            base,
            releases,
            log: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    fn release_json(&self, i: usize) -> Value {
        let r = &self.releases[i];
        let (base, v) = (&self.base, &r.version);
        json!({
            "tag_name": format!("v{v}"),
            "name": format!("appliance {v}"),
            "created_at": "2030-01-01T00:00:00Z",
            "published_at": "2030-01-01T00:00:00Z",
            "draft": false,
            "prerelease": false,
            "body": "",
            "html_url": format!("{base}/{OWNER}/{REPO}/releases/tag/v{v}"),
            "assets": [{
                "id": i + 1,
                "name": r.asset,
                "url": format!("{base}/repos/{OWNER}/{REPO}/releases/assets/{}", i + 1),
                "browser_download_url": format!("{base}/{OWNER}/{REPO}/releases/download/v{v}/{}", r.asset),
                "content_type": "application/gzip",
                "state": "uploaded",
                "size": r.bytes.len(),
            }],
        })
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn downloads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.contains("/assets/") && r.ends_with("application/octet-stream"))
            .count()
    }
}

async fn handle(State(fake): State<Arc<FakeGitHub>>, req: Request) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    fake.log
        .lock()
        .unwrap()
        .push(format!("{} {accept}", req.uri()));
    let prefix = format!("/repos/{OWNER}/{REPO}/releases");
    let Some(rest) = req.uri().path().strip_prefix(&prefix) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match rest {
        "" => {
            let all: Vec<Value> = (0..fake.releases.len())
                .map(|i| fake.release_json(i))
                .collect();
            axum::Json(all).into_response()
        }
        "/latest" if !fake.releases.is_empty() => axum::Json(fake.release_json(0)).into_response(),
        _ => match rest
            .strip_prefix("/assets/")
            .and_then(|id| id.parse::<usize>().ok())
            .filter(|id| (1..=fake.releases.len()).contains(id))
        {
            Some(id) if accept.contains("application/octet-stream") => (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                fake.releases[id - 1].bytes.clone(),
            )
                .into_response(),
            Some(id) => axum::Json(fake.release_json(id - 1)["assets"][0].clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// A copy of the real binary, a config pointing at the fake server, and an
/// empty dpkg info dir (so the host's dpkg database never matters).
struct Setup {
    _dir: TempDir,
    exe: PathBuf,
    config: PathBuf,
    dpkg: PathBuf,
    server: Arc<FakeGitHub>,
}

impl Setup {
    async fn new(releases: Vec<FakeRelease>, trusted: &[[u8; 32]]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        let exe = bin_dir.join("appliance");
        std::fs::copy(BIN, &exe).unwrap();
        let dpkg = dir.path().join("dpkg-info");
        std::fs::create_dir(&dpkg).unwrap();
        let server = FakeGitHub::start(releases).await;
        let keys: Vec<String> = trusted
            .iter()
            .map(|k| format!("\"{}\"", public_key(k)))
            .collect();
        let config = dir.path().join("appliance.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\npath = \"{}\"\n\n[update]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\npublic_keys = [{}]\n",
                dir.path().join("appliance.db").display(),
                server.base,
                keys.join(", ")
            ),
        )
        .unwrap();
        Setup {
            _dir: dir,
            exe,
            config,
            dpkg,
            server,
        }
    }

    async fn self_update(&self, args: &[&str]) -> (Output, String, String) {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("self-update")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env(appliance::update::DPKG_INFO_DIR_ENV, &self.dpkg)
            .env_remove("APPLIANCE_CONFIG");
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        let out = run(cmd).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stdout, stderr)
    }

    /// The copy is still, byte for byte, the binary the tests were built as,
    /// and nothing was left beside it.
    fn assert_unchanged(&self) {
        let now = Sha256::digest(std::fs::read(&self.exe).unwrap());
        assert!(now.as_slice() == bin_digest(), "the binary was modified");
        let beside: Vec<_> = std::fs::read_dir(self.exe.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, ["appliance"], "files left beside the binary");
    }
}

fn bin_digest() -> &'static [u8] {
    static DIGEST: OnceLock<Vec<u8>> = OnceLock::new();
    DIGEST.get_or_init(|| Sha256::digest(std::fs::read(BIN).unwrap()).to_vec())
}

/// Run to completion (bounded). Retries ETXTBSY: a binary just copied can be
/// "busy" while another test thread's fork still holds the copy's write fd.
async fn run(mut cmd: tokio::process::Command) -> Output {
    for _ in 0..50 {
        match cmd.output().await {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r.expect("run the binary"),
        }
    }
    panic!("the binary stayed busy (ETXTBSY)");
}

fn assert_refused(out: &Output, stdout: &str, stderr: &str, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(!stdout.contains("updated"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_newer_release_replaces_the_binary() {
    let s = Setup::new(
        vec![
            release("9.9.9", Signing::By(RELEASE_KEY)),
            release("0.0.1", Signing::By(RELEASE_KEY)),
        ],
        &[RELEASE_KEY],
    )
    .await;
    let (out, stdout, stderr) = s.self_update(&[]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("updated {CURRENT} -> 9.9.9 (signature verified with key #1)")
    );
    assert_eq!(std::fs::read(&s.exe).unwrap(), NEW_BIN);
    assert_eq!(s.server.downloads(), 1, "{:?}", s.server.requests());
    // What was installed runs.
    let ran = run(tokio::process::Command::new(&s.exe)).await;
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "appliance 9.9.9\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_configured_key_verifies_for_rotation() {
    let s = Setup::new(
        vec![release("9.9.9", Signing::By(RELEASE_KEY))],
        &[OTHER_KEY, RELEASE_KEY],
    )
    .await;
    let (out, stdout, stderr) = s.self_update(&[]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(signature verified with key #2)"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&s.exe).unwrap(), NEW_BIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_new_version_and_changes_nothing() {
    let s = Setup::new(
        vec![release("9.9.9", Signing::By(RELEASE_KEY))],
        &[RELEASE_KEY],
    )
    .await;
    let (out, stdout, stderr) = s.self_update(&["--check"]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("update available: {CURRENT} -> 9.9.9")
    );
    assert!(!s.server.requests().is_empty());
    assert_eq!(s.server.downloads(), 0, "{:?}", s.server.requests());
    s.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_artifact_is_refused() {
    let s = Setup::new(vec![release("9.9.9", Signing::Tampered)], &[RELEASE_KEY]).await;
    let (out, stdout, stderr) = s.self_update(&[]).await;
    assert_refused(
        &out,
        &stdout,
        &stderr,
        "not signed by a configured release key",
    );
    assert!(stderr.contains(&asset_name("9.9.9")), "{stderr}");
    // Refused after the download, by the signature check.
    assert_eq!(s.server.downloads(), 1, "{:?}", s.server.requests());
    s.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_artifact_is_refused() {
    let s = Setup::new(vec![release("9.9.9", Signing::Unsigned)], &[RELEASE_KEY]).await;
    let (out, stdout, stderr) = s.self_update(&[]).await;
    assert_refused(
        &out,
        &stdout,
        &stderr,
        "not signed by a configured release key",
    );
    assert_eq!(s.server.downloads(), 1, "{:?}", s.server.requests());
    s.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_signed_by_another_key_is_refused() {
    let s = Setup::new(
        vec![release("9.9.9", Signing::By(OTHER_KEY))],
        &[RELEASE_KEY],
    )
    .await;
    let (out, stdout, stderr) = s.self_update(&[]).await;
    assert_refused(
        &out,
        &stdout,
        &stderr,
        "not signed by a configured release key",
    );
    s.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_or_same_version_is_never_installed() {
    let s = Setup::new(
        vec![
            release(CURRENT, Signing::By(RELEASE_KEY)),
            release("0.0.1", Signing::By(RELEASE_KEY)),
        ],
        &[RELEASE_KEY],
    )
    .await;
    for args in [&[][..], &["--check"][..]] {
        let (out, stdout, stderr) = s.self_update(args).await;
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
        assert_eq!(stdout.trim(), format!("appliance {CURRENT} is up to date"));
    }
    assert_eq!(s.server.downloads(), 0, "{:?}", s.server.requests());
    s.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_key_refuses_before_any_request() {
    let s = Setup::new(vec![release("9.9.9", Signing::By(RELEASE_KEY))], &[]).await;
    let (out, stdout, stderr) = s.self_update(&[]).await;
    assert_refused(&out, &stdout, &stderr, "no release signing key configured");
    assert!(s.server.requests().is_empty(), "{:?}", s.server.requests());
    s.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_installed_by_the_deb_points_at_apt() {
    let s = Setup::new(
        vec![release("9.9.9", Signing::By(RELEASE_KEY))],
        &[RELEASE_KEY],
    )
    .await;
    let exe = s.exe.canonicalize().unwrap();
    std::fs::write(
        s.dpkg.join("appliance.list"),
        format!("/.\n/usr\n/usr/bin\n{}\n", exe.display()),
    )
    .unwrap();
    for args in [&[][..], &["--check"][..]] {
        let (out, stdout, stderr) = s.self_update(args).await;
        assert_refused(
            &out,
            &stdout,
            &stderr,
            "installed by the Debian package `appliance`; upgrade it with apt (sudo apt update && sudo apt install appliance)",
        );
    }
    assert!(s.server.requests().is_empty(), "{:?}", s.server.requests());
    s.assert_unchanged();
}

#[test]
fn managed_by_package_reads_dpkg_lists() {
    use appliance::update::managed_by_package;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let info = root.join("info");
    let usr_bin = root.join("usr/bin");
    std::fs::create_dir_all(&info).unwrap();
    std::fs::create_dir_all(&usr_bin).unwrap();
    // A merged-/usr style alias: root/bin -> root/usr/bin.
    std::os::unix::fs::symlink(&usr_bin, root.join("bin")).unwrap();
    let exe = usr_bin.join("appliance");
    std::fs::write(&exe, b"x").unwrap();
    let other = root.join("elsewhere/appliance");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, b"x").unwrap();
    let write = |name: &str, lines: &[&Path]| {
        let text: Vec<String> = lines.iter().map(|p| p.display().to_string()).collect();
        std::fs::write(info.join(name), text.join("\n") + "\n").unwrap();
    };

    // Not listed anywhere yet; a non-.list file naming it does not count.
    write("coreutils.list", &[Path::new("/."), &usr_bin.join("ls")]);
    write("appliance.md5sums", &[&exe]);
    assert_eq!(managed_by_package(&exe, &info), None);

    // Listed exactly; a multi-arch list name drops its `:arch`.
    write("appliance:amd64.list", &[Path::new("/."), &usr_bin, &exe]);
    assert_eq!(
        managed_by_package(&exe, &info).as_deref(),
        Some("appliance")
    );
    assert_eq!(managed_by_package(&other, &info), None);

    // Listed through the symlinked directory, found by its canonical path.
    std::fs::remove_file(info.join("appliance:amd64.list")).unwrap();
    write("appliance.list", &[&root.join("bin/appliance")]);
    assert_eq!(
        managed_by_package(&exe, &info).as_deref(),
        Some("appliance")
    );

    // No dpkg at all.
    assert_eq!(managed_by_package(&exe, &root.join("missing")), None);
}
