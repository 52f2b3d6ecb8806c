use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("t.toml")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems }) => problems.iter().map(|p| p.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config.example.toml");
    let cfg = parse(text, Path::new("config.example.toml")).unwrap();
    assert_eq!(cfg.providers.len(), 11);
    let stripe = &cfg.providers[0];
    assert_eq!(stripe.name, "stripe");
    assert_eq!(stripe.routes.len(), 2);
    assert_eq!(stripe.routes[0].name, "payments");
    assert_eq!(stripe.routes[1].name, "stripe.1");
    assert!(matches!(stripe.routes[1].target, Target::Command(_)));
    assert_eq!(cfg.providers[1].path, "/hooks/gh");
    assert_eq!(cfg.outbox.schedule.len(), 10);
}

#[test]
fn embedded_default_has_generated_secrets() {
    let cfg = embedded_default();
    assert_eq!(cfg.source, Source::Embedded);
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.providers.len(), 1);
    assert_eq!(cfg.providers[0].path, "/webhooks/default");
    assert_eq!(cfg.providers[0].kind, "standard-webhooks");
    assert!(matches!(
        cfg.providers[0].secret,
        SecretSource::Generated(_)
    ));
    assert!(matches!(cfg.admin.token, SecretSource::Generated(_)));
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let p = problems(
        "[server]\nlisten = \"x\"\nmax_body = \"big\"\n[providers.a]\nkind = \"nope\"\nsecret_env = \"A\"\n",
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].starts_with("t.toml:2:10: server.listen"), "{p:#?}");
    assert!(p[1].starts_with("t.toml:3:12: server.max_body"), "{p:#?}");
    assert!(p[2].starts_with("t.toml:5:8: providers.a.kind"), "{p:#?}");
}

#[test]
fn a_missing_key_is_reported_at_its_table_header() {
    let p = problems("[server]\nlisten = \"127.0.0.1:1\"\n\n[providers.github]\npath = \"/gh\"\n");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("t.toml:4:1: providers.github: missing key `secret_env`"),
        "{p:#?}"
    );
}

#[test]
fn secrets_are_never_inline() {
    let p = problems("[providers.github]\nsecret_env = \"whsec_abc+/=\"\n");
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("not an environment variable name"));
    assert!(problems("[providers.github]\nsecret = \"x\"\n")[0].contains("unknown field `secret`"));
}

#[test]
fn route_rules() {
    let p = problems(
        "[providers.github]\nsecret_env = \"A\"\n[[providers.github.routes]]\nevents = [\"*\"]\n[[providers.github.routes]]\nurl = \"ftp://x\"\ncommand = [\"/bin/true\"]\n[[providers.github.routes]]\nurl = \"nope\"\n",
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].contains("routes[0]: give exactly one target"),
        "{p:#?}"
    );
    assert!(
        p[1].contains("routes[1]: give exactly one target"),
        "{p:#?}"
    );
    assert!(p[2].contains("routes[2].url"), "{p:#?}");
}

#[test]
fn hmac_keys_only_for_hmac() {
    let p = problems("[providers.github]\nsecret_env = \"A\"\nheader = \"X-Sig\"\n");
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("only for kind = \"hmac\""));
}

#[test]
fn globs() {
    assert!(glob_match("*", "anything"));
    assert!(glob_match("*", ""));
    assert!(glob_match("payment_intent.*", "payment_intent.succeeded"));
    assert!(!glob_match("payment_intent.*", "charge.refunded"));
    assert!(glob_match("orders/*", "orders/create"));
    assert!(glob_match("a*b*c", "a-x-b-y-c"));
    assert!(!glob_match("a*b*c", "a-x-c"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("ab*ba", "aba"));
    assert!(glob_match("é*", "éa"));
}

mod fuzz {
    //! Arbitrary text never makes the config parser panic: it is valid or a
    //! list of positioned problems. `PROPTEST_CASES=100000 cargo test --release
    //! proptests` for a long run.
    use super::super::*;
    use proptest::prelude::*;

    fn cases() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..ProptestConfig::default()
        }
    }

    /// Lines that look like this config, shuffled into arbitrary documents.
    fn tomlish() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            Just("[server]".to_string()),
            Just("[providers.x]".to_string()),
            Just("[[providers.x.routes]]".to_string()),
            Just("[providers.snaptrade.sync]".to_string()),
            "[a-z_]{1,12} = \"[ -~]{0,20}\"",
            "[a-z_]{1,12} = [0-9]{1,6}",
            "(kind|path|secret_env|tolerance|max_body|listen|url|events|header|id_from|type_from|schedule|allow_ips) = (\"[ -~]{0,16}\"|\\[\"[ -~]{0,8}\"\\]|[0-9]{1,4}|true)",
            "[ -~]{0,30}",
        ];
        prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn proptests_config_never_panics_on_any_text(text in any::<String>()) {
            let _ = parse(&text, Path::new("fuzz.toml"));
        }

        #[test]
        fn proptests_config_never_panics_on_config_like_text(text in tomlish()) {
            match parse(&text, Path::new("fuzz.toml")) {
                Ok(_) => {}
                Err(ConfigError::Invalid { problems }) => {
                    prop_assert!(!problems.is_empty());
                    for p in problems {
                        prop_assert!(p.line >= 1 && p.col >= 1);
                        prop_assert!(p.line <= text.lines().count().max(1) + 1);
                    }
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
