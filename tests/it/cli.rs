//! The command line as users run it: the real binary.

use crate::common::*;
use std::process::Command;

const EXAMPLE_ENV: &[&str] = &[
    "APPLIANCE_ADMIN_TOKEN",
    "STRIPE_WEBHOOK_SECRET",
    "DOWNSTREAM_SECRET",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_WEBHOOK_SECRET_OLD",
    "SLACK_SIGNING_SECRET",
    "SHOPIFY_CLIENT_SECRET",
    "SVIX_WEBHOOK_SECRET",
    "SNAPTRADE_CONSUMER_KEY",
    "SNAPTRADE_CLIENT_ID",
    "TWILIO_AUTH_TOKEN",
    "DISCORD_PUBLIC_KEY",
    "GITLAB_WEBHOOK_TOKEN",
];

#[test]
fn check_config_accepts_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let mut cmd = Command::new(BIN);
    cmd.args(["check-config", "--config", example]);
    for v in EXAMPLE_ENV {
        cmd.env(v, "set");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for p in [
        "stripe",
        "github-deploys",
        "acme",
        "snaptrade",
        "/hooks/gh",
        "route payments",
    ] {
        assert!(stdout.contains(p), "summary lacks {p}:\n{stdout}");
    }
    assert!(
        !stdout.contains("set\n"),
        "a secret value leaked:\n{stdout}"
    );
    // Only the secret file of the example is missing here: a warning, not an error.
    assert!(
        stderr.contains("warning:") && stderr.contains("acme.secret"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("STRIPE_WEBHOOK_SECRET is not set"),
        "{stderr}"
    );
}

#[test]
fn check_config_reports_each_problem_with_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        ("syntax", "[server\nlisten = \"x\"\n", "bad.toml:1:8:"),
        (
            "unknown key",
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n",
            "bad.toml:3:1: unknown field `lisen`",
        ),
        (
            "bad duration",
            "[server]\nread_timeout = \"soon\"\n",
            "bad.toml:2:16: server.read_timeout: invalid duration",
        ),
        (
            "bad size",
            "[server]\nmax_body = \"lots\"\n",
            "bad.toml:2:12: server.max_body: invalid size",
        ),
        (
            "bad cidr",
            "[providers.github]\nsecret_env = \"X\"\nallow_ips = [\"1.2.3.4/40\"]\n",
            "bad.toml:3:14: providers.github.allow_ips: invalid CIDR",
        ),
        (
            "unknown kind",
            "[providers.x]\nkind = \"pigeon\"\nsecret_env = \"X\"\n",
            "bad.toml:2:8: providers.x.kind: unknown kind \"pigeon\"",
        ),
        (
            "same path",
            "[providers.github]\nsecret_env = \"X\"\n[providers.b]\nkind = \"github\"\nsecret_env = \"X\"\npath = \"/webhooks/github\"\n",
            "bad.toml:6:8: providers.b: path /webhooks/github is already used by provider github",
        ),
        (
            "hmac without header",
            "[providers.acme]\nkind = \"hmac\"\nsecret_env = \"X\"\n",
            "bad.toml:1:1: providers.acme: kind \"hmac\" needs `header`",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, text, want) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(want),
            "{what}: expected {want:?} in:\n{stderr}"
        );
    }
}

#[test]
fn serve_refuses_to_start_without_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\npath = \"{}/a.db\"\n[server]\nlisten = \"127.0.0.1:0\"\n[providers.github]\nsecret_env = \"APPLIANCE_TEST_SURELY_UNSET\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("APPLIANCE_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("APPLIANCE_TEST_SURELY_UNSET is not set"),
        "{stderr}"
    );
}

#[test]
fn usage_error_exits_2() {
    let out = Command::new(BIN).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The embedded default end to end: a server with no config file generates
/// its secret, and `send-test default` (also with no config file, in the same
/// directory) signs with it and is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_and_send_test() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = appliance::config::embedded_default();
    cfg.storage.path = dir.path().join("appliance.db");
    let app = TestApp::start(dir, cfg).await;
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(app.dir.path())
            .env_remove("APPLIANCE_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(&[
        "send-test",
        "default",
        "--url",
        &format!("http://{}", app.addr),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("200"));
    assert!(
        lines.next().unwrap_or("").contains("\"accepted\""),
        "{stdout}"
    );

    // The stored event is visible to `events list`, and `admin token` prints the token.
    let out = run(&["events", "list", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let out = run(&["admin", "token"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), app.token);

    // A wrong base URL is a clear failure, exit 1.
    let out = run(&["send-test", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}
