//! Unit tests of the Ansible layer: config validation, the command line, reading the callback's
//! document (and what breaks it), and the verdict each kind of run makes.

use super::ignore::{IgnoreRule, IgnoreRuleConfig};
use super::output::{CallbackDocument, DocumentError, CALLBACK_MARKER};
use super::*;
use crate::model::outcome::Verdict;
use crate::probe::ProbeCommon;

fn common() -> ProbeCommon {
    ProbeCommon {
        name: "ansible".into(),
        layer: "ansible".into(),
        repo: "r".into(),
        path: PathBuf::new(),
        config_dir: PathBuf::from("/etc/driftwatch"),
        labels: Default::default(),
        ..Default::default()
    }
}

fn build_err(toml_text: &str) -> Vec<String> {
    match build(&common(), toml::from_str(toml_text).unwrap()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect(),
    }
}

#[test]
fn config_is_validated_field_by_field() {
    assert!(build_err("playbooks = [\"site.yml\"]\ninventory = \"hosts.ini\"").is_empty());
    assert!(build_err(
        "playbooks = [\"site.yml\"]\ninventory = [\"a.ini\", \"/etc/ansible/hosts\", \"h1,h2,\"]"
    )
    .is_empty());
    let errors = build_err(
        "playbooks = [\"../x.yml\"]\ninventory = \"../inv\"\nforks = 0\ntags = [\"a,b\"]\nextra_vars_files = [\"/etc/vars.yml\"]",
    );
    let keys: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "playbooks[0]",
            "inventory",
            "extra_vars_files[0]",
            "tags",
            "forks"
        ]
    );
    assert_eq!(
        build_err("playbooks = [\"a.yml\"]\ninventory = \"i\"\nunreachable = \"ignore\"").len(),
        1
    );
    assert_eq!(
        build_err("playbooks = [\"a.yml\"]\ninventory = \"i\"\nbogus = 1").len(),
        1
    );
    assert!(build_err("inventory = \"i\"")[0].contains("missing field `playbooks`"));
}

/// A document whose one play matched every host in `hosts`.
fn doc(hosts: &str, results: &str) -> CallbackDocument {
    let names: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(hosts)
            .unwrap()
            .keys()
            .cloned()
            .collect();
    let plays = serde_json::json!([{"playbook": "site.yml", "name": "site", "pattern": "all", "hosts": names}]);
    doc_with_plays(hosts, results, &plays.to_string())
}

fn doc_with_plays(hosts: &str, results: &str, plays: &str) -> CallbackDocument {
    let results = results.replace('\n', " ");
    let line = format!(
        "{{\"marker\": \"{CALLBACK_MARKER}\", \"ansible_version\": \"2.19.0\", \"hosts\": {hosts}, \"results\": {results}, \"plays\": {plays}}}"
    );
    find_document(format!("some other callback output\n{line}\n").as_bytes())
        .expect("document found")
}

/// A document line whose one result has `diff` written as `escaped`
/// (the JSON text between the quotes).
fn line_with_diff(escaped: &str) -> Vec<u8> {
    format!(
        "{{\"marker\": \"{CALLBACK_MARKER}\", \"hosts\": {{}}, \"results\": [{{\"host\": \"h\", \"task\": \"t\", \"status\": \"ok\", \"diff\": \"{escaped}\"}}]}}"
    )
    .into_bytes()
}

#[test]
fn documents_read_every_byte_escape_ansible_can_print() {
    let mib = "x".repeat(1 << 20);
    // (the diff as escaped in the JSON line, the text read back)
    let cases: Vec<(String, String)> = vec![
        // latin-1 bytes, as Python's surrogateescape prints them
        (r"Gr\udcf6\udcdfe".into(), "Gr\u{FFFD}\u{FFFD}e".into()),
        // lone UTF-8 continuation bytes
        (r"a\udc80\udcbfb".into(), "a\u{FFFD}\u{FFFD}b".into()),
        // valid multibyte, escaped (ensure_ascii) and raw, and an astral pair
        (
            r"Gr\u00f6\u00dfe \u20ac \ud834\udd1e".into(),
            "Größe € 𝄞".into(),
        ),
        ("Größe €".into(), "Größe €".into()),
        (r"a\u0000b".into(), "a\0b".into()),
        // lone high and low surrogates, and a lone high right before a pair
        (r"\ud800x\udc00".into(), "\u{FFFD}x\u{FFFD}".into()),
        (r"\ud800\ud800\udc00".into(), "\u{FFFD}\u{10000}".into()),
        // an escaped backslash: the text `\udcf6` itself, not an escape
        (r"\\udcf6".into(), r"\udcf6".into()),
        (format!(r"{mib}\udcff"), format!("{mib}\u{FFFD}")),
    ];
    for (escaped, expected) in cases {
        let doc = find_document(&line_with_diff(&escaped))
            .unwrap_or_else(|e| panic!("{escaped:.40}: {e:?}"));
        assert_eq!(
            doc.results[0].diff.as_deref(),
            Some(expected.as_str()),
            "{escaped:.40}"
        );
    }
}

#[test]
fn an_unreadable_document_names_the_byte_where_reading_stopped() {
    let noise = b"PLAY [all] \xff\xfe\n".to_vec();
    let cut = format!("{{\"marker\": \"{CALLBACK_MARKER}\", \"hosts\": {{");
    let mut stdout = noise.clone();
    stdout.extend_from_slice(cut.as_bytes());
    match find_document(&stdout) {
        Err(DocumentError::Invalid { offset, message }) => {
            // serde_json stops on the last byte it read.
            assert_eq!(offset, stdout.len() - 1, "{message}");
            assert!(message.contains("EOF"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A raw byte that is not UTF-8 inside the document.
    let mut line = line_with_diff("Gr_e");
    let at = line.windows(4).position(|w| w == b"Gr_e").unwrap() + 2;
    line[at] = 0xf6;
    let mut stdout = noise.clone();
    stdout.extend_from_slice(&line);
    match find_document(&stdout) {
        Err(DocumentError::Invalid { offset, message }) => {
            assert!(
                (noise.len() + at..=noise.len() + at + 1).contains(&offset),
                "{offset} {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        find_document(b"no document\n").unwrap_err(),
        DocumentError::Missing
    );

    let err = no_document_error(
        find_document(&stdout).unwrap_err(),
        Some(0),
        None,
        "",
        false,
        &rules(UnreachablePolicy::Error),
        &identity,
    );
    assert_eq!(err.reason, ErrorReason::Parse);
    assert!(
        err.message
            .contains(&format!("at byte {}", noise.len() + at)),
        "{}",
        err.message
    );
    assert!(err.message.contains("(exit code 0)"), "{}", err.message);
}

fn rules(unreachable: UnreachablePolicy) -> VerdictRules<'static> {
    VerdictRules {
        unreachable,
        limit: None,
        ignore: &[],
        workdir: Path::new("/nonexistent"),
        playbooks: &[],
        tags: &[],
        skip_tags: &[],
    }
}

fn identity(text: &str) -> String {
    text.to_string()
}

#[test]
fn stats_decide_the_verdict_not_the_exit_code() {
    let in_sync = doc(r#"{"h1": {"ok": 3, "changed": 0}}"#, "[]");
    let outcome = verdict(
        in_sync,
        Some(0),
        "",
        &rules(UnreachablePolicy::Error),
        &identity,
    )
    .unwrap();
    assert!(!outcome.drifted);
    assert_eq!(outcome.details["hosts"]["h1"]["ok"], 3);

    let drift = doc(
        r#"{"h1": {"ok": 3, "changed": 1}}"#,
        r#"[{"host": "h1", "task": "copy motd", "status": "ok", "changed": true, "diff": "--- before\n+++ after: /root/.ansible/tmp/ansible-local-1abc/tmpx/motd.j2\n@@ -1 +1 @@\n-a\n+b\n\n"}]"#,
    );
    let outcome = verdict(
        drift,
        Some(0),
        "",
        &rules(UnreachablePolicy::Error),
        &identity,
    )
    .unwrap();
    assert!(outcome.drifted);
    assert_eq!(outcome.changes[0].subject, "h1: copy motd");
    assert_eq!(
        outcome.changes[0].diff,
        "--- before\n+++ after\n@@ -1 +1 @@\n-a\n+b"
    );
    assert_eq!(outcome.details["hosts"]["h1"]["changed"], 1);
}

#[test]
fn failures_and_unreachable_hosts_are_errors_unless_policy_says_drift() {
    let failed = doc(
        r#"{"h1": {"failures": 1}}"#,
        r#"[{"host": "h1", "task": "boom", "path": "site.yml:4", "status": "failed", "msg": "it broke"}]"#,
    );
    let err = verdict(
        failed,
        Some(2),
        "",
        &rules(UnreachablePolicy::Drift),
        &identity,
    )
    .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert!(
        err.message
            .contains("failed h1: boom (site.yml:4): it broke"),
        "{}",
        err.message
    );

    let unreachable = r#"[{"host": "far", "task": "copy", "status": "unreachable", "msg": "Connection refused"}]"#;
    let err = verdict(
        doc(r#"{"far": {"unreachable": 1}}"#, unreachable),
        Some(4),
        "",
        &rules(UnreachablePolicy::Error),
        &identity,
    )
    .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Unreachable);
    let outcome = verdict(
        doc(r#"{"far": {"unreachable": 1}}"#, unreachable),
        Some(4),
        "",
        &rules(UnreachablePolicy::Drift),
        &identity,
    )
    .unwrap();
    assert!(outcome.drifted);
    assert_eq!(outcome.changes[0].action, "unreachable");
}

#[test]
fn censored_results_keep_no_diff_and_ignored_failures_do_not_count() {
    let d = doc(
        r#"{"h1": {"changed": 1, "ignored": 1}}"#,
        r#"[{"host": "h1", "task": "secret", "status": "ok", "changed": true, "censored": true},
            {"host": "h1", "task": "optional", "status": "failed", "ignored": true, "msg": "nope"}]"#,
    );
    let outcome = verdict(d, Some(0), "", &rules(UnreachablePolicy::Error), &identity).unwrap();
    assert_eq!(outcome.changes.len(), 1);
    assert_eq!(outcome.changes[0].diff, "(no_log: the result is hidden)");
}

#[test]
fn early_failures_carry_ansibles_message() {
    let stderr = "[WARNING]: something\n[ERROR]: YAML parsing failed: did not find expected ','\nOrigin: /co/site.yml:5:15\n\n5  content: y\n";
    let err = no_document_error(
        DocumentError::Missing,
        Some(4),
        None,
        stderr,
        false,
        &rules(UnreachablePolicy::Error),
        &|t: &str| t.replace("/co/", ""),
    );
    assert_eq!(err.reason, ErrorReason::Input);
    assert!(
        err.message.starts_with("[ERROR]: YAML parsing failed"),
        "{}",
        err.message
    );
    assert!(err.message.contains("Origin: site.yml:5:15"));
    let old = "ERROR! the playbook: missing.yml could not be found\n";
    assert_eq!(
        no_document_error(
            DocumentError::Missing,
            Some(1),
            None,
            old,
            false,
            &rules(UnreachablePolicy::Error),
            &identity
        )
        .message,
        old.trim()
    );
    assert_eq!(
        no_document_error(
            DocumentError::Missing,
            None,
            Some(9),
            "",
            false,
            &rules(UnreachablePolicy::Error),
            &identity
        )
        .reason,
        ErrorReason::ExitCode
    );
}

#[test]
fn a_run_that_checked_nothing_is_an_error_and_unmatched_plays_warn() {
    let web = r#"{"playbook": "site.yml", "name": "web servers", "pattern": "web", "hosts": []}"#;
    let db = r#"{"playbook": "site.yml", "name": "db", "pattern": "db:&prod", "hosts": []}"#;
    let all = r#"{"playbook": "site.yml", "name": "base", "pattern": "all", "hosts": ["h1"]}"#;
    let idle = r#"{"playbook": "site.yml", "name": "base", "pattern": "all", "hosts": ["h1"], "tasks": 0}"#;
    let busy =
        r#"{"playbook": "site.yml", "name": "web", "pattern": "all", "hosts": ["h1"], "tasks": 1}"#;
    let plain = rules(UnreachablePolicy::Error);
    let web_tag = ["web".to_string()];
    let tagged = VerdictRules {
        tags: &web_tag,
        ..rules(UnreachablePolicy::Error)
    };
    let limited = VerdictRules {
        limit: Some("nomatch"),
        ..rules(UnreachablePolicy::Error)
    };
    // (plays, host stats, rules, error message or warnings)
    type Case<'a> = (
        String,
        &'a str,
        &'a VerdictRules<'a>,
        Result<Vec<&'a str>, &'a str>,
    );
    let table: Vec<Case> = vec![
        (
            format!("[{web}]"),
            "{}",
            &plain,
            Err("checked nothing: no play matched a host\n  play \"web servers\" (site.yml): hosts \"web\""),
        ),
        (
            format!("[{web}, {db}]"),
            "{}",
            &limited,
            Err("checked nothing: no play matched a host with --limit \"nomatch\"\n  play \"web servers\" (site.yml): hosts \"web\"\n  play \"db\" (site.yml): hosts \"db:&prod\""),
        ),
        ("[]".to_string(), "{}", &plain, Err("checked nothing: the playbooks hold no play")),
        (
            format!("[{web}, {all}]"),
            r#"{"h1": {"ok": 1}}"#,
            &plain,
            Ok(vec!["play \"web servers\" (site.yml): hosts \"web\" matched no host"]),
        ),
        (format!("[{all}]"), r#"{"h1": {"ok": 1}}"#, &plain, Ok(vec![])),
        // Hosts matched, but the tags left no task (fact gathering ran: ok 1).
        (
            format!("[{idle}]"),
            r#"{"h1": {"ok": 1}}"#,
            &tagged,
            Err("checked nothing: no task ran with --tags \"web\"\n  play \"base\" (site.yml): hosts \"all\": 1 host(s), no task"),
        ),
        (
            format!("[{idle}, {busy}]"),
            r#"{"h1": {"ok": 2}}"#,
            &tagged,
            Ok(vec!["play \"base\" (site.yml): hosts \"all\" ran no task with --tags \"web\""]),
        ),
    ];
    for (plays, hosts, rules, expected) in table {
        let result = verdict(
            doc_with_plays(hosts, "[]", &plays),
            Some(0),
            "",
            rules,
            &identity,
        );
        match (result, expected) {
            (Err(err), Err(message)) => {
                assert_eq!(err.reason, ErrorReason::Input);
                assert_eq!(err.message, message);
            }
            (Ok(outcome), Ok(warnings)) => {
                assert_eq!(outcome.verdict(), Verdict::InSync);
                assert_eq!(outcome.warnings, warnings);
            }
            (got, want) => panic!("{plays}: got {got:?}, want {want:?}"),
        }
    }
    // A play whose hosts the callback could not list: checked, if ansible ran on a host.
    let unlisted = r#"[{"name": "p", "pattern": "all", "hosts": [], "error": "boom"}]"#;
    let outcome = verdict(
        doc_with_plays(r#"{"h1": {"ok": 1}}"#, "[]", unlisted),
        Some(0),
        "",
        &rules(UnreachablePolicy::Error),
        &identity,
    )
    .unwrap();
    assert_eq!(outcome.warnings, ["play \"p\": hosts \"all\": boom"]);
    assert!(verdict(
        doc_with_plays("{}", "[]", unlisted),
        Some(0),
        "",
        &rules(UnreachablePolicy::Error),
        &identity
    )
    .is_err());

    // --limit leaving no host stops ansible before any play.
    let stderr = "[WARNING]: Could not match supplied host pattern, ignoring: nomatch\n[ERROR]: Specified inventory, host pattern and/or --limit leaves us with no hosts to target.\n";
    let err = no_document_error(
        DocumentError::Missing,
        Some(1),
        None,
        stderr,
        false,
        &limited,
        &identity,
    );
    assert_eq!(err.reason, ErrorReason::Input);
    assert!(err.message.starts_with("checked nothing: --limit \"nomatch\" leaves no host of the inventory to target\n[ERROR]: Specified"), "{}", err.message);
}

#[test]
fn changed_tasks_matching_an_ignore_rule_are_listed_not_drift() {
    let rule = |index: usize, host: Option<&str>, task: Option<&str>| {
        IgnoreRule::build(
            &format!("ignore[{index}]"),
            &IgnoreRuleConfig {
                host: host.map(String::from),
                task: task.map(String::from),
            },
        )
        .unwrap()
    };
    let results = r#"[{"host": "web1", "task": "common : restart nginx", "action": "service", "status": "ok", "changed": true, "handler": true},
        {"host": "web1", "task": "copy motd", "status": "ok", "changed": true, "diff": "-a\n+b"},
        {"host": "db1", "task": "common : restart nginx", "status": "ok", "changed": true}]"#;
    let hosts = r#"{"web1": {"changed": 2}, "db1": {"changed": 1}}"#;
    let ignore = [rule(0, Some("web*"), Some("common : restart*"))];
    let with = |ignore: &[IgnoreRule]| {
        let rules = VerdictRules {
            ignore,
            ..rules(UnreachablePolicy::Error)
        };
        verdict(doc(hosts, results), Some(0), "", &rules, &identity).unwrap()
    };
    let outcome = with(&ignore);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["web1: copy motd", "db1: common : restart nginx"]);
    assert_eq!(
        outcome.message,
        "2 change(s) on 2 of 2 host(s); 1 ignored change(s)"
    );
    assert_eq!(outcome.details["ignored"], 1);
    assert_eq!(
        outcome.details["ignored_changes"][0]["subject"],
        "web1: common : restart nginx"
    );
    assert_eq!(outcome.details["ignored_changes"][0]["rule"], "ignore[0]");

    let everything = [
        rule(0, Some("web1"), None),
        rule(1, None, Some("*restart*")),
    ];
    let outcome = with(&everything);
    assert_eq!(outcome.verdict(), Verdict::InSync);
    assert_eq!(outcome.message, "2 host(s) in sync; 3 ignored change(s)");
    let rules_used: Vec<&str> = outcome.details["ignored_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules_used,
        ["ignore[0]", "ignore[0]", "ignore[1]"],
        "the first matching rule"
    );

    // Failures are never ignored.
    let failed =
        r#"[{"host": "web1", "task": "common : restart nginx", "status": "failed", "msg": "no"}]"#;
    let rules = VerdictRules {
        ignore: &everything,
        ..rules(UnreachablePolicy::Error)
    };
    let err = verdict(
        doc(r#"{"web1": {"failures": 1}}"#, failed),
        Some(2),
        "",
        &rules,
        &identity,
    )
    .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
}

#[test]
fn a_nonzero_exit_without_failures_is_an_error() {
    let d = doc(r#"{"h1": {"ok": 1}}"#, "[]");
    let err = verdict(
        d,
        Some(1),
        "ERROR! something else\n",
        &rules(UnreachablePolicy::Error),
        &identity,
    )
    .unwrap_err();
    assert_eq!(err.message, "ERROR! something else");
}
