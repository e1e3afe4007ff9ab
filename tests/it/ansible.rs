//! The Ansible layer against real ansible-core: localhost over
//! `ansible_connection=local`, managing files in a temporary directory with
//! copy, template, lineinfile and file. The tests apply the playbook for
//! real themselves (their own setup), then check the probe's verdicts.

use std::path::PathBuf;
use std::time::Duration;

use driftwatch::model::outcome::{ErrorReason, Outcome, ProbeError, RunReport, Verdict};
use driftwatch::probe::ansible;

use crate::common;

const TIMEOUT: Duration = Duration::from_secs(180);

const SITE: &str = r#"- name: files
  hosts: all
  gather_facts: false
  vars:
    greeting: hello
  tasks:
    - name: copy motd
      ansible.builtin.copy:
        dest: "{{ state_dir }}/motd"
        content: "welcome to {{ inventory_hostname }}\n"
        mode: "0644"
    - name: render app config
      ansible.builtin.template:
        src: app.conf.j2
        dest: "{{ state_dir }}/app.conf"
        mode: "0644"
    - name: data directory
      ansible.builtin.file:
        path: "{{ state_dir }}/data"
        state: directory
        mode: "0750"
  roles:
    - tuning
"#;

const TEMPLATE: &str = "greeting = {{ greeting }}\nhost = {{ inventory_hostname }}\n";

/// In a role under a `roles_path` that only the repo's ansible.cfg names, so
/// the run fails unless ansible.cfg is honoured.
const ROLE_TASKS: &str = r#"- name: kernel setting
  ansible.builtin.lineinfile:
    path: "{{ state_dir }}/sysctl.conf"
    line: "vm.swappiness = 10"
    create: true
    mode: "0644"
"#;

struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    /// A repo with `site.yml`, a template, a role found through ansible.cfg,
    /// and an inventory of `hosts` local hosts, each with its own state dir.
    fn new(hosts: &[&str]) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab { tmp };
        lab.write("site.yml", SITE);
        lab.write("templates/app.conf.j2", TEMPLATE);
        lab.write("extra_roles/tuning/tasks/main.yml", ROLE_TASKS);
        lab.write("ansible.cfg", "[defaults]\nroles_path = extra_roles\n");
        let mut inventory = String::from("[local]\n");
        for host in hosts {
            let state = lab.state(host);
            std::fs::create_dir_all(&state).unwrap();
            inventory.push_str(&format!(
                "{host} ansible_connection=local ansible_python_interpreter=\"{{{{ ansible_playbook_python }}}}\" state_dir={}\n",
                state.display()
            ));
        }
        lab.write("hosts.ini", &inventory);
        lab
    }

    fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    fn state(&self, host: &str) -> PathBuf {
        self.tmp.path().join("state").join(host)
    }

    fn write(&self, path: &str, text: &str) {
        let full = self.repo().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    /// The test's own setup: apply the playbook for real.
    fn apply(&self, playbook: &str) {
        let home = self.tmp.path().join("apply-home");
        let out = std::process::Command::new("ansible-playbook")
            .args(["-i", "hosts.ini", "--forks", "10", playbook])
            .current_dir(self.repo())
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .output()
            .expect("ansible-playbook runs");
        assert!(
            out.status.success(),
            "apply failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `playbook` in check mode with driftwatch's callback and no
    /// driftwatch in between: the callback's raw stdout.
    fn callback_stdout(&self, playbook: &str) -> Vec<u8> {
        let home = self.tmp.path().join("callback-home");
        let plugins = home.join("callbacks");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::write(
            plugins.join(format!("{}.py", ansible::CALLBACK_NAME)),
            ansible::CALLBACK_SOURCE,
        )
        .unwrap();
        let out = std::process::Command::new("ansible-playbook")
            .args(["-i", "hosts.ini", "--check", "--diff", playbook])
            .current_dir(self.repo())
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_CALLBACK_PLUGINS", &plugins)
            .env("ANSIBLE_STDOUT_CALLBACK", ansible::CALLBACK_NAME)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .output()
            .expect("ansible-playbook runs");
        out.stdout
    }

    async fn check(&self, fields: &str) -> Result<Outcome, ProbeError> {
        self.check_with_timeout(fields, TIMEOUT).await
    }

    async fn check_with_timeout(
        &self,
        fields: &str,
        timeout: Duration,
    ) -> Result<Outcome, ProbeError> {
        let probe = common::build_probe("ansible", "ansible", "repo", fields)
            .expect("valid ansible fields");
        let run_dir = tempfile::tempdir_in(self.tmp.path()).unwrap();
        let cx = common::probe_context("ansible", self.tmp.path(), "repo", run_dir.path(), timeout);
        probe.run(&cx).await
    }
}

const FIELDS: &str = "playbooks = [\"site.yml\"]\ninventory = \"hosts.ini\"\n";

fn report_json(result: Result<Outcome, ProbeError>) -> (RunReport, String) {
    // Built from JSON so fields added to RunReport later take their defaults.
    let mut report: RunReport = serde_json::from_value(serde_json::json!({
        "probe": "ansible", "name": "ansible", "layer": "ansible", "run_id": 1,
        "trigger": "manual", "repo": "test", "commit": "0".repeat(40),
        "started_at": chrono::Utc::now(), "duration": 1.0, "verdict": "in_sync", "changes": [],
    }))
    .unwrap();
    report.apply_result(result);
    let json = serde_json::to_string(&report).unwrap();
    (report, json)
}

#[tokio::test]
async fn in_sync_after_apply_and_drifted_after_a_hand_edit() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.apply("site.yml");

    let outcome = lab.check(FIELDS).await.expect("in sync run succeeds");
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.details["hosts"]["localhost"]["changed"], 0);
    assert!(
        outcome.details["hosts"]["localhost"]["ok"]
            .as_u64()
            .unwrap()
            >= 4
    );
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);

    let state = lab.state("localhost");
    std::fs::write(state.join("motd"), "edited by hand\n").unwrap();
    std::fs::write(state.join("app.conf"), "greeting = hi\nhost = localhost\n").unwrap();
    std::fs::write(state.join("sysctl.conf"), "").unwrap();
    std::fs::remove_dir(state.join("data")).unwrap();

    let outcome = lab.check(FIELDS).await.expect("drift run succeeds");
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.exit_code, Some(0), "drift in check mode exits 0");
    let subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "localhost: tuning : kernel setting",
            "localhost: copy motd",
            "localhost: render app config",
            "localhost: data directory",
        ],
        "roles run before tasks"
    );
    let diff = |i: usize| outcome.changes[i].diff.as_str();
    assert!(diff(0).contains("+vm.swappiness = 10"), "{}", diff(0));
    assert!(
        diff(1).contains("-edited by hand") && diff(1).contains("+welcome to localhost"),
        "{}",
        diff(1)
    );
    assert!(
        diff(2).contains("-greeting = hi") && diff(2).contains("+greeting = hello"),
        "{}",
        diff(2)
    );
    assert!(
        diff(3).contains("-    \"state\": \"absent\"")
            && diff(3).contains("+    \"state\": \"directory\""),
        "{}",
        diff(3)
    );
    for change in &outcome.changes {
        assert_eq!(change.action, "changed");
        assert!(
            !change.diff.contains("ansible-local-") && !change.diff.contains(".ansible/tmp"),
            "{}",
            change.diff
        );
        assert!(!change.diff.ends_with('\n'));
    }
    assert_eq!(outcome.details["hosts"]["localhost"]["changed"], 4);
    assert_eq!(
        outcome.details["changed_tasks"][2]["module"],
        "ansible.builtin.template"
    );
    assert_eq!(outcome.details["changed_tasks"][2]["path"], "site.yml:12");
    // Check mode changed nothing.
    assert_eq!(
        std::fs::read_to_string(state.join("motd")).unwrap(),
        "edited by hand\n"
    );
}

#[tokio::test]
async fn failing_tasks_missing_playbooks_and_unknown_modules_are_errors() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.write(
        "fail.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: must hold\n      ansible.builtin.assert:\n        that: [\"1 == 2\"]\n        fail_msg: the invariant broke\n",
    );
    lab.write(
        "unknown.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: typo\n      ansible.builtin.no_such_module:\n        x: 1\n",
    );

    let err = lab
        .check("playbooks = [\"fail.yml\"]\ninventory = \"hosts.ini\"")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert_eq!(err.exit_code, Some(2));
    assert!(
        err.message
            .contains("localhost: must hold (fail.yml:4): the invariant broke"),
        "{}",
        err.message
    );

    let err = lab
        .check("playbooks = [\"unknown.yml\"]\ninventory = \"hosts.ini\"")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Input);
    assert!(
        err.message.contains("no_such_module") && err.message.contains("unknown.yml"),
        "{}",
        err.message
    );

    let err = lab
        .check("playbooks = [\"missing.yml\"]\ninventory = \"hosts.ini\"")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Input);
    assert!(
        err.message.contains("missing.yml") && err.message.contains("could not be found"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_yaml_syntax_error_names_the_file() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.write(
        "broken.yml",
        "- hosts: all\n  tasks:\n    - name: x\n      copy: {dest: /tmp/x\n       content: y\n",
    );
    let err = lab
        .check("playbooks = [\"broken.yml\"]\ninventory = \"hosts.ini\"")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Input);
    assert_eq!(err.exit_code, Some(4));
    assert!(err.message.contains("broken.yml"), "{}", err.message);
    assert!(
        !err.message.contains(&lab.repo().display().to_string()),
        "paths are relative: {}",
        err.message
    );
}

#[tokio::test]
async fn unreachable_hosts_are_errors_or_drift_by_policy() {
    if !common::have_tool("ansible-playbook") || !common::have_tool("ssh") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    let port = common::free_port();
    lab.write(
        "far.ini",
        &format!(
            "far ansible_host=127.0.0.1 ansible_port={port} ansible_user=nobody state_dir=/nonexistent \
             ansible_ssh_common_args=\"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20\"\n"
        ),
    );
    let fields = "playbooks = [\"site.yml\"]\ninventory = \"far.ini\"\n";
    let err = lab.check(fields).await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::Unreachable, "{err:?}");
    assert!(
        err.message
            .contains("unreachable far: tuning : kernel setting"),
        "{}",
        err.message
    );

    let outcome = lab
        .check(&format!("{fields}unreachable = \"drift\"\n"))
        .await
        .expect("unreachable counts as drift");
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes[0].subject, "far: tuning : kernel setting");
    assert_eq!(outcome.changes[0].action, "unreachable");
    assert_eq!(outcome.details["hosts"]["far"]["unreachable"], 1);
}

#[tokio::test]
async fn no_log_values_never_reach_the_report() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    const SECRET: &str = "hunter2-correct-horse-battery";
    let lab = Lab::new(&["localhost"]);
    lab.write(
        "secret.yml",
        &format!(
            r#"- hosts: all
  gather_facts: false
  vars:
    db_password: {SECRET}
  tasks:
    - name: write credentials
      ansible.builtin.copy:
        dest: "{{{{ state_dir }}}}/credentials"
        content: "password={{{{ db_password }}}}\n"
      no_log: true
    - name: write credentials list
      ansible.builtin.lineinfile:
        path: "{{{{ state_dir }}}}/credentials-{{{{ item }}}}"
        line: "password={{{{ db_password }}}}"
        create: true
      loop: [a, b]
      no_log: true
"#
        ),
    );
    lab.write(
        "secret-fail.yml",
        &format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: leak attempt\n      ansible.builtin.fail:\n        msg: \"{SECRET}\"\n      no_log: true\n"
        ),
    );

    let result = lab
        .check("playbooks = [\"secret.yml\"]\ninventory = \"hosts.ini\"")
        .await;
    let (report, json) = report_json(result);
    assert_eq!(report.verdict, Verdict::Drifted, "{json}");
    assert_eq!(report.changes.len(), 2, "{json}");
    assert_eq!(report.changes[0].subject, "localhost: write credentials");
    assert!(report.changes[0].diff.contains("no_log"), "{json}");
    assert!(
        !json.contains(SECRET) && !json.contains("hunter2"),
        "secret leaked: {json}"
    );
    assert!(!format!("{report:?}").contains(SECRET));

    let result = lab
        .check("playbooks = [\"secret-fail.yml\"]\ninventory = \"hosts.ini\"")
        .await;
    let err = result.clone().unwrap_err();
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    let (report, json) = report_json(result);
    assert_eq!(report.verdict, Verdict::Error);
    assert!(!json.contains(SECRET), "secret leaked: {json}");
}

#[tokio::test]
async fn check_mode_false_tasks_warn_by_default_and_are_refused_when_strict() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.write(
        "live.yml",
        r#"- hosts: all
  gather_facts: false
  tasks:
    - name: read the release
      ansible.builtin.command: cat /etc/os-release
      changed_when: false
    - name: record a marker for real
      ansible.builtin.command: touch "{{ state_dir }}/marker"
      changed_when: false
      check_mode: false
"#,
    );
    let marker = lab.state("localhost").join("marker");
    let fields = "playbooks = [\"live.yml\"]\ninventory = \"hosts.ini\"\n";
    let expected = "task \"record a marker for real\" (live.yml:10) has check_mode: false and runs for real in check mode";

    let probe = common::build_probe("ansible", "ansible", "repo", fields).unwrap();
    assert_eq!(probe.inspect(&lab.repo()), [expected]);

    let outcome = lab
        .check(fields)
        .await
        .expect("warnings do not fail the run");
    assert_eq!(outcome.verdict(), Verdict::InSync);
    assert_eq!(outcome.warnings, [expected]);
    assert!(
        marker.exists(),
        "the task really ran, which is why it is flagged"
    );
    let (report, _) = report_json(Ok(outcome));
    assert_eq!(report.warnings, [expected]);

    std::fs::remove_file(&marker).unwrap();
    let err = lab
        .check(&format!("{fields}strict_check_mode = true\n"))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Refused);
    assert!(err.message.contains(expected), "{}", err.message);
    assert!(!marker.exists(), "refused runs never start ansible");
}

#[tokio::test]
async fn twenty_local_hosts_get_their_own_detail() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let hosts: Vec<String> = (1..=20).map(|i| format!("host{i:02}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let lab = Lab::new(&names);
    // Two tasks only: 20 hosts x every module run is slow on a loaded machine.
    lab.write(
        "fleet.yml",
        r#"- hosts: all
  gather_facts: false
  tasks:
    - name: copy motd
      ansible.builtin.copy:
        dest: "{{ state_dir }}/motd"
        content: "welcome to {{ inventory_hostname }}\n"
    - name: kernel setting
      ansible.builtin.lineinfile:
        path: "{{ state_dir }}/sysctl.conf"
        line: "vm.swappiness = 10"
        create: true
"#,
    );
    lab.apply("fleet.yml");
    let drifted = ["host03", "host11", "host20"];
    for host in drifted {
        std::fs::write(lab.state(host).join("motd"), "changed\n").unwrap();
    }
    std::fs::remove_file(lab.state("host11").join("sysctl.conf")).unwrap();

    let outcome = lab
        .check("playbooks = [\"fleet.yml\"]\ninventory = \"hosts.ini\"\nforks = 10\n")
        .await
        .expect("run succeeds");
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let per_host = outcome.details["hosts"].as_object().unwrap();
    assert_eq!(per_host.len(), 20);
    for host in &hosts {
        let expected = match host.as_str() {
            "host11" => 2,
            h if drifted.contains(&h) => 1,
            _ => 0,
        };
        assert_eq!(per_host[host]["changed"], expected, "{host}");
        assert_eq!(per_host[host]["failures"], 0, "{host}");
    }
    let mut subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "host03: copy motd",
            "host11: copy motd",
            "host11: kernel setting",
            "host20: copy motd"
        ]
    );
    let host20 = outcome
        .changes
        .iter()
        .find(|c| c.subject == "host20: copy motd")
        .unwrap();
    assert!(
        host20.diff.contains("+welcome to host20"),
        "{}",
        host20.diff
    );
}

#[tokio::test]
async fn timeout_kills_ansibles_process_group() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    // A sleep length no other process uses, so pgrep finds only ours.
    let marker = format!("sleep 7{}.25", std::process::id());
    lab.write(
        "slow.yml",
        &format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: slow\n      ansible.builtin.command: {marker}\n      check_mode: false\n"
        ),
    );
    let fields = "playbooks = [\"slow.yml\"]\ninventory = \"hosts.ini\"\n";
    let started = std::time::Instant::now();
    let probe = common::build_probe("ansible", "ansible", "repo", fields).unwrap();
    let run_dir = tempfile::tempdir_in(lab.tmp.path()).unwrap();
    let cx = common::probe_context(
        "ansible",
        lab.tmp.path(),
        "repo",
        run_dir.path(),
        Duration::from_secs(60),
    );
    let run = tokio::spawn({
        let cx = cx.clone();
        async move { probe.run(&cx).await }
    });
    // Wait until the task's command is really running, then time the run out
    // by cancelling (the same kill path as the deadline).
    while !crate::common::process_running(&marker) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the slow task never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cx.cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(err.reason, ErrorReason::Cancelled);
    assert!(
        !crate::common::process_running(&marker),
        "ansible's worker left its command behind"
    );
    assert!(
        err.warnings.iter().any(|w| w.contains("\"slow\"")),
        "{:?}",
        err.warnings
    );

    // And the deadline itself.
    let err = lab
        .check_with_timeout(fields, Duration::from_secs(8))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Timeout);
    assert!(
        !crate::common::process_running(&marker),
        "ansible's worker left its command behind"
    );
}

/// Writes `bytes` as a host's file, the way an edit on the host leaves it.
fn write_host_file(lab: &Lab, host: &str, name: &str, bytes: &[u8]) {
    std::fs::write(lab.state(host).join(name), bytes).unwrap();
}

#[tokio::test]
async fn a_latin1_edit_on_the_host_is_drift_with_a_readable_diff() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.write(
        "text.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: managed text\n      ansible.builtin.copy:\n        dest: \"{{ state_dir }}/greeting.txt\"\n        content: \"Größe\\n\"\n",
    );
    // ISO-8859-1 for "Größe": not UTF-8, so ansible reads it as surrogate escapes.
    write_host_file(&lab, "localhost", "greeting.txt", b"Gr\xf6\xdfe\n");
    let result = lab
        .check("playbooks = [\"text.yml\"]\ninventory = \"hosts.ini\"\n")
        .await;
    let outcome = result.expect("drift, not an error");
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes.len(), 1);
    let diff = &outcome.changes[0].diff;
    assert!(diff.contains("\n-Gr\u{FFFD}\u{FFFD}e\n"), "{diff}");
    assert!(diff.contains("\n+Größe"), "{diff}");
    let (report, json) = report_json(Ok(outcome));
    assert_eq!(report.verdict, Verdict::Drifted);
    assert!(json.contains("Gr\u{FFFD}\u{FFFD}e"), "{json}");
}

#[tokio::test]
async fn any_bytes_a_host_holds_reach_the_report_as_text() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    // Diffs of files up to 4 MiB, so the 1 MiB line goes through the callback.
    lab.write(
        "ansible.cfg",
        "[defaults]\nroles_path = extra_roles\nmax_diff_size = 4194304\n",
    );
    let mib_line = {
        let mut line = vec![b'y'; 1 << 20];
        line.extend_from_slice(b"\xff\n");
        line
    };
    // (file, bytes on the host, text the diff's "-" side must hold)
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "latin1",
            b"Gr\xf6\xdfe\n".to_vec(),
            "-Gr\u{FFFD}\u{FFFD}e\n".into(),
        ),
        (
            "continuation",
            b"a\x80\xbfb\n".to_vec(),
            "-a\u{FFFD}\u{FFFD}b\n".into(),
        ),
        (
            "multibyte",
            "Größe € 𝄞\n".as_bytes().to_vec(),
            "-Größe € 𝄞\n".into(),
        ),
        (
            "truncated",
            b"euro \xe2\x82\n".to_vec(),
            "-euro \u{FFFD}".into(),
        ),
        (
            "cesu",
            b"s\xed\xa0\x80s\n".to_vec(),
            "-s\u{FFFD}\u{FFFD}\u{FFFD}s\n".into(),
        ),
        ("nul", b"a\x00b\n".to_vec(), "binary".into()),
        ("mib", mib_line, "-yyyyyyyy".into()),
    ];
    let mut playbook = String::from("- hosts: all\n  gather_facts: false\n  tasks:\n");
    for (name, bytes, _) in &cases {
        playbook.push_str(&format!(
            "    - name: {name}\n      ansible.builtin.copy:\n        dest: \"{{{{ state_dir }}}}/{name}\"\n        content: \"managed\\n\"\n"
        ));
        write_host_file(&lab, "localhost", name, bytes);
    }
    lab.write("bytes.yml", &playbook);

    // The callback alone prints strict JSON: ASCII, no lone surrogate escape.
    let stdout = lab.callback_stdout("bytes.yml");
    assert!(stdout.is_ascii());
    let line = stdout
        .split(|b| *b == b'\n')
        .find(|line| line.starts_with(b"{\"ansible_version\""))
        .expect("the callback's document");
    assert!(line.len() > 1 << 20);
    let strict: serde_json::Value = serde_json::from_slice(line).expect("strict JSON");
    let diffs: Vec<&str> = strict["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["diff"].as_str().unwrap())
        .collect();
    assert!(diffs[0].contains("-Gr\u{FFFD}\u{FFFD}e\n"), "{}", diffs[0]);

    let outcome = lab
        .check("playbooks = [\"bytes.yml\"]\ninventory = \"hosts.ini\"\n")
        .await
        .expect("drift, not an error");
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes.len(), cases.len(), "{:?}", outcome.changes);
    for ((name, _, expected), change) in cases.iter().zip(&outcome.changes) {
        assert_eq!(change.subject, format!("localhost: {name}"));
        assert!(
            change.diff.contains(expected.as_str()),
            "{name}: {:.300}",
            change.diff
        );
        assert!(!change.diff.contains('\u{0}') || *name == "nul", "{name}");
    }
    let mib = &outcome.changes[cases.len() - 1].diff;
    assert!(
        mib.contains("more bytes cut"),
        "capped: {} bytes",
        mib.len()
    );

    // The same bytes in a message: a failed task quoting a latin-1 file.
    write_host_file(&lab, "localhost", "quoted", b"Gr\xf6\xdfe");
    lab.write(
        "quote.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: quote\n      ansible.builtin.fail:\n        msg: \"{{ lookup('file', state_dir + '/quoted') }}\"\n",
    );
    let err = lab
        .check("playbooks = [\"quote.yml\"]\ninventory = \"hosts.ini\"\n")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode, "{err:?}");
    assert!(
        err.message
            .contains("localhost: quote (quote.yml:4): Gr\u{FFFD}\u{FFFD}e"),
        "{}",
        err.message
    );
}

/// (case, probe fields, the start of the error message, what it must name)
type CheckedNothing<'a> = (&'a str, &'a str, &'a str, &'a [&'a str]);

/// Each case is an `input` error, never in sync, with the message it names.
async fn assert_checked_nothing(lab: &Lab, cases: &[CheckedNothing<'_>]) {
    for (case, fields, start, named) in cases {
        let result = lab.check(fields).await;
        let (report, json) = report_json(result.clone());
        assert_eq!(report.verdict, Verdict::Error, "{case}: {json}");
        let err = result.unwrap_err();
        assert_eq!(err.reason, ErrorReason::Input, "{case}: {err:?}");
        assert!(err.message.starts_with(start), "{case}: {}", err.message);
        for name in *named {
            assert!(err.message.contains(name), "{case}: {}", err.message);
        }
    }
}

/// The play and host patterns the "checked nothing" tests use.
const WEB_PLAY: &str = "- name: web servers\n  hosts: web\n  gather_facts: false\n  tasks:\n    - name: copy motd\n      ansible.builtin.copy:\n        dest: \"{{ state_dir }}/motd\"\n        content: \"web\\n\"\n";

#[tokio::test]
async fn a_run_that_checked_nothing_is_an_error_never_in_sync() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.write("web.yml", WEB_PLAY);
    lab.write(
        "all.yml",
        "- name: everyone\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: copy motd\n      ansible.builtin.copy:\n        dest: \"{{ state_dir }}/motd\"\n        content: \"all\\n\"\n",
    );
    lab.write(
        "empty-list.yml",
        "- name: nobody\n  hosts: []\n  gather_facts: false\n  tasks: []\n",
    );
    lab.write("empty.ini", "# no host yet\n");
    let cases: &[CheckedNothing] = &[
        (
            "the only play's group is not in the inventory",
            "playbooks = [\"web.yml\"]\ninventory = \"hosts.ini\"\n",
            "checked nothing: no play matched a host\n",
            &["play \"web servers\" (web.yml): hosts \"web\""],
        ),
        (
            "an empty inventory",
            "playbooks = [\"all.yml\"]\ninventory = \"empty.ini\"\n",
            "checked nothing: no play matched a host\n",
            &["play \"everyone\" (all.yml): hosts \"all\""],
        ),
        (
            "an inventory path that does not exist (ansible only warns)",
            "playbooks = [\"all.yml\"]\ninventory = \"hots.ini\"\n",
            "checked nothing: no play matched a host\n",
            &["play \"everyone\" (all.yml): hosts \"all\""],
        ),
        (
            "--limit matching no host",
            "playbooks = [\"all.yml\"]\ninventory = \"hosts.ini\"\nlimit = \"nomatch\"\n",
            "checked nothing: --limit \"nomatch\" leaves no host of the inventory to target",
            &["no hosts to target"],
        ),
        (
            "--limit and the play's pattern leave no host in common",
            "playbooks = [\"web.yml\"]\ninventory = \"hosts.ini\"\nlimit = \"localhost\"\n",
            "checked nothing: no play matched a host with --limit \"localhost\"\n",
            &["hosts \"web\""],
        ),
        (
            "a play with hosts: []",
            "playbooks = [\"empty-list.yml\"]\ninventory = \"hosts.ini\"\n",
            // ansible names no play here; driftwatch does.
            "[ERROR]: Hosts list cannot be empty",
            &["checked nothing for:\n  play \"nobody\" (empty-list.yml): hosts []"],
        ),
    ];
    assert_checked_nothing(&lab, cases).await;
}

/// Two plays with tagged tasks; the first gathers facts, which ansible runs
/// whatever the tags say (it is tagged `always`) and which checks nothing.
const TAGGED: &str = "- name: app\n  hosts: all\n  tasks:\n    - name: app file\n      ansible.builtin.copy:\n        dest: \"{{ state_dir }}/app\"\n        content: \"app\\n\"\n      tags: [app]\n- name: db\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: db file\n      ansible.builtin.copy:\n        dest: \"{{ state_dir }}/db\"\n        content: \"db\\n\"\n      tags: [db]\n";

#[tokio::test]
async fn tags_that_skip_every_task_check_nothing() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.write("tagged.yml", TAGGED);
    lab.apply("site.yml");
    lab.apply("tagged.yml");
    // In sync as a whole: the cases below differ only by the tags.
    let outcome = lab.check(FIELDS).await.expect("a verdict");
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    let cases: &[CheckedNothing] = &[
        (
            "--tags naming no task",
            "playbooks = [\"site.yml\"]\ninventory = \"hosts.ini\"\ntags = [\"nomatch\"]\n",
            "checked nothing: no task ran with --tags \"nomatch\"\n",
            &["play \"files\" (site.yml): hosts \"all\": 1 host(s), no task"],
        ),
        (
            "--skip-tags untagged, and no task has a tag",
            "playbooks = [\"site.yml\"]\ninventory = \"hosts.ini\"\nskip_tags = [\"untagged\"]\n",
            "checked nothing: no task ran with --skip-tags \"untagged\"\n",
            &["play \"files\""],
        ),
        (
            "only the implicit fact gathering ran",
            "playbooks = [\"tagged.yml\"]\ninventory = \"hosts.ini\"\ntags = [\"web\"]\nskip_tags = [\"db\"]\n",
            "checked nothing: no task ran with --tags \"web\" --skip-tags \"db\"\n",
            &["play \"app\" (tagged.yml): hosts \"all\": 1 host(s), no task", "play \"db\""],
        ),
        (
            "--skip-tags covering every tag",
            "playbooks = [\"tagged.yml\"]\ninventory = \"hosts.ini\"\nskip_tags = [\"app\", \"db\"]\n",
            "checked nothing: no task ran with --skip-tags \"app,db\"\n",
            &["play \"app\"", "play \"db\""],
        ),
    ];
    assert_checked_nothing(&lab, cases).await;
    // Tags that leave one play something to check: a verdict, and the idle play warns.
    let fields = "playbooks = [\"tagged.yml\"]\ninventory = \"hosts.ini\"\ntags = [\"db\"]\n";
    let outcome = lab.check(fields).await.expect("a verdict");
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(
        outcome.warnings,
        ["play \"app\" (tagged.yml): hosts \"all\" ran no task with --tags \"db\""]
    );
    assert_eq!(
        outcome.details["plays"][0]["tasks"], 0,
        "{}",
        outcome.details
    );
    assert_eq!(
        outcome.details["plays"][1]["tasks"], 1,
        "{}",
        outcome.details
    );
    std::fs::write(lab.state("localhost").join("db"), "edited\n").unwrap();
    let outcome = lab.check(fields).await.expect("a verdict");
    assert_eq!(outcome.verdict(), Verdict::Drifted, "{outcome:?}");
    assert_eq!(outcome.changes[0].subject, "localhost: db file");
}

#[tokio::test]
async fn plays_that_matched_no_host_warn_beside_a_verdict() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["h1", "h2"]);
    lab.write(
        "mixed.yml",
        &format!(
            "{WEB_PLAY}- name: one at a time\n  hosts: all\n  serial: 1\n  gather_facts: false\n  tasks:\n    - name: copy motd\n      ansible.builtin.copy:\n        dest: \"{{{{ state_dir }}}}/motd\"\n        content: \"hi\\n\"\n"
        ),
    );
    std::fs::write(lab.state("h1").join("motd"), "hi\n").unwrap();
    std::fs::write(lab.state("h2").join("motd"), "hi\n").unwrap();
    let fields = "playbooks = [\"mixed.yml\"]\ninventory = \"hosts.ini\"\n";
    let expected = "play \"web servers\" (mixed.yml): hosts \"web\" matched no host";
    let outcome = lab.check(fields).await.expect("a verdict");
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(outcome.warnings, [expected]);
    // Both serial batches count as matched.
    assert_eq!(
        outcome.details["plays"][1]["hosts"], 2,
        "{}",
        outcome.details
    );
    assert_eq!(outcome.details["plays"][0]["hosts"], 0);

    std::fs::write(lab.state("h2").join("motd"), "edited\n").unwrap();
    let outcome = lab
        .check(&format!("{fields}limit = \"h2\"\n"))
        .await
        .expect("a verdict");
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes[0].subject, "h2: copy motd");
    assert_eq!(
        outcome.warnings,
        [format!("{expected} with --limit \"h2\"")]
    );
    assert_eq!(outcome.details["plays"][1]["hosts"], 1);
}

#[tokio::test]
async fn ignore_rules_match_host_and_task_globs_and_list_what_they_ignored() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.apply("site.yml");
    let state = lab.state("localhost");
    std::fs::write(state.join("motd"), "edited by hand\n").unwrap();
    std::fs::write(state.join("sysctl.conf"), "").unwrap();

    let role_rule = "[[ignore]]\ntask = \"tuning : kernel*\"\n";
    let outcome = lab
        .check(&format!("{FIELDS}{role_rule}"))
        .await
        .expect("a verdict");
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["localhost: copy motd"]);
    assert_eq!(outcome.details["ignored"], 1);
    let ignored = &outcome.details["ignored_changes"][0];
    assert_eq!(ignored["subject"], "localhost: tuning : kernel setting");
    assert_eq!(ignored["rule"], "ignore[0]");
    assert_eq!(ignored["path"], "extra_roles/tuning/tasks/main.yml:1");

    // Every change ignored: in sync, and the report still lists them.
    let host_rule = "[[ignore]]\nhost = \"local*\"\ntask = \"copy *\"\n";
    let result = lab.check(&format!("{FIELDS}{role_rule}{host_rule}")).await;
    let (report, json) = report_json(result);
    assert_eq!(report.verdict, Verdict::InSync, "{json}");
    assert_eq!(report.details["ignored"], 2, "{json}");
    assert_eq!(report.details["ignored_changes"][1]["rule"], "ignore[1]");
    assert!(report.message.ends_with("2 ignored change(s)"), "{json}");

    // A rule for other hosts ignores nothing.
    let other = "[[ignore]]\nhost = \"db*\"\n";
    let outcome = lab.check(&format!("{FIELDS}{other}")).await.unwrap();
    assert_eq!(outcome.changes.len(), 2);
    assert_eq!(outcome.details["ignored"], 0);
}

#[test]
fn ignore_rules_in_the_config_file_point_at_their_line() {
    let config = "[[repo]]\nname = \"infra\"\nurl = \"https://example.com/infra.git\"\n\n[[probe]]\nname = \"web\"\nlayer = \"ansible\"\nrepo = \"infra\"\nplaybooks = [\"site.yml\"]\ninventory = \"hosts.ini\"\n[[probe.ignore]]\ntask = \"common : restart*\"\n[[probe.ignore]]\nhost = \"web-[1\"\n[[probe.ignore]]\nhots = \"web\"\n";
    let problems = crate::config::problems(config);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "dw.toml:16:1: probe.web.ignore[2].hots: unknown key `hots`, did you mean `host`?"
        ),
        "{problems:?}"
    );
    let problems = crate::config::problems(&config.replace("hots = \"web\"", "task = \"x\""));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("dw.toml:14:8: probe.web.ignore[1].host: invalid glob \"web-[1\""),
        "{problems:?}"
    );
}

/// A task that leaves children behind outside ansible's process group (as
/// ansible's own workers and SSH masters do): they are gone when the run
/// ends, because everything ansible starts carries the run's marker.
#[tokio::test]
async fn children_a_task_leaves_behind_are_gone_when_the_run_ends() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    let escapees = common::Escapees::new(&lab.tmp.path().join("pids"));
    let script = lab.tmp.path().join("escape.sh");
    std::fs::write(&script, escapees.script("exit 0")).unwrap();
    lab.write(
        "escape.yml",
        &format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: leave children behind\n      ansible.builtin.shell: sh {} > /dev/null 2>&1\n      check_mode: false\n      changed_when: false\n",
            script.display()
        ),
    );
    let result = lab
        .check("playbooks = [\"escape.yml\"]\ninventory = \"hosts.ini\"\n")
        .await;
    let started = escapees.started();
    let survivors = escapees.survivors();
    escapees.cleanup();
    let outcome = result.expect("the run succeeds");
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert!(started, "the task never started its children");
    assert!(survivors.is_empty(), "outlived the run: {survivors:?}");
}

/// Check-mode shapes from the peers' reports, against real ansible-core: a
/// script or a `changed_when: true` command is skipped in check mode, so it
/// is neither drift nor in-sync evidence (ansible/ansible#76127 reported
/// `script` as changed; ansible#61285 asks for skipped commands to count); a
/// handler notified by a changed task is part of that task's change, not a
/// second one; once applied, the same playbook is in sync.
#[tokio::test]
async fn skipped_tasks_and_notified_handlers_from_peer_reports() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let lab = Lab::new(&["localhost"]);
    lab.write("files/check.sh", "#!/bin/sh\necho hi\n");
    lab.write(
        "shapes.yml",
        r#"- hosts: all
  gather_facts: false
  handlers:
    - name: reload app
      ansible.builtin.debug:
        msg: reload
  tasks:
    - name: copy motd
      ansible.builtin.copy:
        dest: "{{ state_dir }}/motd"
        content: "x\n"
      notify: reload app
    - name: run a script
      ansible.builtin.script: files/check.sh
    - name: probe with changed_when
      ansible.builtin.command: "true"
      changed_when: true
"#,
    );
    let fields = "playbooks = [\"shapes.yml\"]\ninventory = \"hosts.ini\"\n";
    let outcome = lab.check(fields).await.expect("the run completes");
    let subjects: Vec<(&str, &str)> = outcome
        .changes
        .iter()
        .map(|c| (c.subject.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(subjects, [("localhost: copy motd", "changed")]);

    lab.apply("shapes.yml");
    let outcome = lab.check(fields).await.expect("the run completes");
    assert_eq!(outcome.verdict(), Verdict::InSync, "{:?}", outcome.changes);
    assert!(outcome.changes.is_empty());
}
