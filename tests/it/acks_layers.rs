//! Acknowledgements with each layer's real tool, through the real daemon and
//! `/metrics` (issue 22): Terraform (a resource changed outside,
//! acknowledged, then changed again), Ansible (a host's file acknowledged,
//! then a second task drifts), Kubernetes on the emulator (a `kubectl scale`
//! acknowledged, then a `kubectl set image` alerts).

use std::path::Path;

use serde_json::json;

use crate::acks::{ack_metrics, metric_in, Harness};
use crate::common;

/// The id of the only instance of probe `name`, once it is listed.
fn instance_of(h: &Harness, name: &str) -> String {
    let body = h
        .daemon()
        .wait_for("/api/v1/probes", "the instance", |code, body| {
            code == 200 && body.contains(&format!("\"name\":\"{name}\""))
        });
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the metric is `value` for `probe`.
fn wait_metric(h: &Harness, name: &str, probe: &str, value: f64) {
    h.daemon().wait_for("/metrics", name, |_, body| {
        metric_in(body, name, probe) == Some(value)
    });
}

#[test]
fn terraform_changed_outside_acknowledged_then_changed_again() {
    if !crate::terraform::have_terraform() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let external = outside.path().join("size.txt");
    let state = outside.path().join("state/terraform.tfstate");
    let cli_config = outside.path().join("empty.tfrc");
    std::fs::write(&cli_config, "").unwrap();
    std::fs::write(&external, "small").unwrap();
    let main = format!(
        "terraform {{\n  backend \"local\" {{\n    path = {state:?}\n  }}\n}}\n\
         resource \"terraform_data\" \"size\" {{\n  input = fileexists({0:?}) ? file({0:?}) : \"absent\"\n}}\n",
        external.to_str().unwrap(),
        state = state.to_str().unwrap()
    );
    // Reality as git says, applied by the test itself (driftwatch never applies).
    let setup = outside.path().join("setup");
    std::fs::create_dir_all(&setup).unwrap();
    std::fs::write(setup.join("main.tf"), &main).unwrap();
    for args in [
        &["init", "-input=false", "-no-color"][..],
        &["apply", "-auto-approve", "-input=false", "-no-color"][..],
    ] {
        let out = std::process::Command::new("terraform")
            .args(args)
            .current_dir(&setup)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let h = Harness::start(
        &[("tf/main.tf", &main)],
        &format!(
            "[[probe]]\nname = \"tf\"\nlayer = \"terraform\"\nrepo = \"infra\"\npath = \"tf\"\nschedule = \"\"\ncli_config_file = {:?}\n",
            cli_config.to_str().unwrap()
        ),
        "",
    );
    let id = instance_of(&h, "tf");
    assert_eq!(h.wait_verdict(&id)["status"], "in_sync");
    // Reality moves; git does not.
    std::fs::write(&external, "large").unwrap();
    let view = h.run(&id);
    assert_eq!(view["status"], "drifted", "{view}");
    assert_eq!(view["last_report"]["changes"][0]["origin"], "outside");
    assert_eq!(ack_metrics(&h, "tf"), (1.0, 1.0, 0.0, 0.0));
    let (code, ack) = h.ack(
        &id,
        json!({"by": "erin", "reason": "resized by hand in INC-9", "expires": "2d"}),
    );
    assert_eq!(code, 201, "{ack}");
    assert_eq!(ack["covers"][0]["subject"], "terraform_data.size");
    assert_eq!(ack_metrics(&h, "tf"), (0.0, 0.0, 1.0, 0.0));
    assert_eq!(
        h.metric("terradiff_plan_exit_code", "tf"),
        Some(2.0),
        "the verdict stays"
    );
    // The same drift planned again is still acknowledged.
    h.run(&id);
    assert_eq!(ack_metrics(&h, "tf"), (0.0, 0.0, 1.0, 0.0));
    // Changed again outside: another drift, it alerts.
    std::fs::write(&external, "huge").unwrap();
    h.run(&id);
    assert_eq!(ack_metrics(&h, "tf"), (1.0, 1.0, 0.0, 1.0));
    assert!(h.wait_event(&id, "ack_changed").contains("erin"));
}

const SITE: &str = r#"- name: files
  hosts: all
  gather_facts: false
  tasks:
    - name: copy motd
      ansible.builtin.copy:
        dest: "{{ state_dir }}/motd"
        content: "welcome\n"
        mode: "0644"
    - name: copy app config
      ansible.builtin.copy:
        dest: "{{ state_dir }}/app.conf"
        content: "greeting = hello\n"
        mode: "0644"
"#;

#[test]
fn ansible_a_hosts_file_acknowledged_then_a_second_task_drifts() {
    if !common::have_tool("ansible-playbook") {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let host_state = outside.path().join("web1");
    std::fs::create_dir_all(&host_state).unwrap();
    let inventory = format!(
        "[local]\nweb1 ansible_connection=local ansible_python_interpreter=\"{{{{ ansible_playbook_python }}}}\" state_dir={}\n",
        host_state.display()
    );
    // Applied for real by the test, from a copy of what the repo holds.
    let setup = outside.path().join("setup");
    std::fs::create_dir_all(&setup).unwrap();
    std::fs::write(setup.join("site.yml"), SITE).unwrap();
    std::fs::write(setup.join("hosts.ini"), &inventory).unwrap();
    let home = outside.path().join("home");
    let out = std::process::Command::new("ansible-playbook")
        .args(["-i", "hosts.ini", "site.yml"])
        .current_dir(&setup)
        .env("ANSIBLE_HOME", &home)
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(host_state.join("motd"), "edited by hand\n").unwrap();
    let h = Harness::start(
        &[("ansible/site.yml", SITE), ("ansible/hosts.ini", &inventory)],
        "[[probe]]\nname = \"hosts\"\nlayer = \"ansible\"\nrepo = \"infra\"\npath = \"ansible\"\nschedule = \"\"\nplaybooks = [\"site.yml\"]\ninventory = \"hosts.ini\"\n",
        "",
    );
    let view = h.wait_verdict("hosts");
    assert_eq!(view["status"], "drifted", "{view}");
    assert_eq!(
        view["last_report"]["changes"][0]["subject"], "web1: copy motd",
        "{view}"
    );
    let (code, ack) = h.ack(
        "hosts",
        json!({"by": "frank", "reason": "banner kept for the audit", "expires": "7d", "subjects": ["web1: copy motd"]}),
    );
    assert_eq!(code, 201, "{ack}");
    assert_eq!(ack_metrics(&h, "hosts"), (0.0, 0.0, 1.0, 0.0));
    // A second task drifts: it alerts; the acknowledged file stays quiet.
    std::fs::write(host_state.join("app.conf"), "greeting = hi\n").unwrap();
    let view = h.run("hosts");
    assert_eq!(
        view["last_report"]["changes"].as_array().unwrap().len(),
        2,
        "{view}"
    );
    assert_eq!(ack_metrics(&h, "hosts"), (1.0, 1.0, 1.0, 0.0));
    let (_, body) = h.daemon().get("/metrics").unwrap();
    assert!(
        body.contains("resource=\"web1: copy app config\""),
        "{body}"
    );
    assert!(!body.contains("resource=\"web1: copy motd\""), "{body}");
    let changes = h.probe("hosts")["last_report"]["changes"].clone();
    let acknowledged: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["acknowledged_by"].is_array())
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(acknowledged, ["web1: copy motd"]);
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.25
";

fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_a_scale_acknowledged_then_set_image_alerts() {
    if !common::have_tool("kubectl") {
        return;
    }
    let emulator = kube_emulator::KubeEmulator::start().await;
    emulator.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{DEPLOYMENT}"
    ));
    let outside = tempfile::tempdir().unwrap();
    let kubeconfig = emulator.write_kubeconfig(outside.path());
    let probes = format!(
        "[[probe]]\nname = \"k8s\"\nlayer = \"kubernetes\"\nrepo = \"infra\"\npath = \"deploy\"\nschedule = \"\"\nkubeconfig = {:?}\nwatch_debounce = \"300ms\"\n",
        kubeconfig.display().to_string()
    );
    // The daemon and the blocking HTTP polls run off the emulator's workers.
    let h = tokio::task::spawn_blocking(move || {
        let h = Harness::start(&[("deploy/web.yaml", DEPLOYMENT)], &probes, "");
        let view = h.wait_verdict("k8s");
        assert_eq!(view["status"], "in_sync", "{view}");
        h
    })
    .await
    .unwrap();
    let home = outside.path().to_path_buf();
    let kc = kubeconfig.clone();
    let h = tokio::task::spawn_blocking(move || {
        kubectl(&kc, &home, &["-n", "shop", "scale", "deployment", "web", "--replicas=5"]);
        wait_metric(&h, "driftwatch_probe_drifted", "k8s", 1.0);
        let (code, ack) = h.ack(
            "k8s",
            json!({"by": "gina", "reason": "scaled for the sale", "expires": "12h", "fields": ["spec.replicas"]}),
        );
        assert_eq!(code, 201, "{ack}");
        assert_eq!(ack["covers"][0]["field"], "spec.replicas", "{ack}");
        assert_eq!(ack_metrics(&h, "k8s"), (0.0, 0.0, 1.0, 0.0));
        // A later image change is new drift in another field: it alerts, and
        // the scale stays acknowledged (not "changed").
        kubectl(&kc, &home, &["-n", "shop", "set", "image", "deployment/web", "web=nginx:1.26"]);
        wait_metric(&h, "driftwatch_probe_drifted", "k8s", 1.0);
        assert_eq!(ack_metrics(&h, "k8s"), (1.0, 1.0, 0.0, 0.0));
        let (_, list) = h.request("GET", "/api/v1/acks", None, "");
        assert_eq!(list["acks"][0]["state"], "active", "{list}");
        assert_eq!(list["acks"][0]["covers"][0]["matches"], true, "{list}");
        // Scaled further: the acknowledged field itself changed.
        kubectl(&kc, &home, &["-n", "shop", "scale", "deployment", "web", "--replicas=7"]);
        wait_metric(&h, "driftwatch_probe_ack_mismatched_resources", "k8s", 1.0);
        h
    })
    .await
    .unwrap();
    drop(h);
}

/// Hidden values enter fingerprints only keyed: a changed Terraform
/// sensitive value is a changed drift although its diff reads the same, and
/// neither value shows anywhere.
#[test]
fn terraform_a_changed_sensitive_value_is_a_changed_drift_and_never_shown() {
    if !crate::terraform::have_terraform() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("password.txt");
    let state = outside.path().join("state/terraform.tfstate");
    let cli_config = outside.path().join("empty.tfrc");
    std::fs::write(&cli_config, "").unwrap();
    std::fs::write(&secret, "hunter2-first").unwrap();
    let main = format!(
        "terraform {{\n  backend \"local\" {{\n    path = {state:?}\n  }}\n}}\n\
         resource \"terraform_data\" \"db\" {{\n  input = sensitive(file({0:?}))\n}}\n",
        secret.to_str().unwrap(),
        state = state.to_str().unwrap()
    );
    let setup = outside.path().join("setup");
    std::fs::create_dir_all(&setup).unwrap();
    std::fs::write(setup.join("main.tf"), &main).unwrap();
    for args in [
        &["init", "-input=false", "-no-color"][..],
        &["apply", "-auto-approve", "-input=false", "-no-color"][..],
    ] {
        let out = std::process::Command::new("terraform")
            .args(args)
            .current_dir(&setup)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&secret, "hunter2-second").unwrap();
    let h = Harness::start(
        &[("tf/main.tf", &main)],
        &format!(
            "[[probe]]\nname = \"tf\"\nlayer = \"terraform\"\nrepo = \"infra\"\npath = \"tf\"\nschedule = \"\"\ncli_config_file = {:?}\n",
            cli_config.to_str().unwrap()
        ),
        "",
    );
    let id = instance_of(&h, "tf");
    let view = h.wait_verdict(&id);
    assert_eq!(view["status"], "drifted", "{view}");
    let first = view["last_report"]["changes"][0].clone();
    let (code, ack) = h.ack(
        &id,
        json!({"by": "ivy", "reason": "rotation pending", "expires": "1d"}),
    );
    assert_eq!(code, 201, "{ack}");
    assert_eq!(ack_metrics(&h, "tf"), (0.0, 0.0, 1.0, 0.0));
    // Another hidden value: the diff is the same, the drift is not.
    std::fs::write(&secret, "hunter2-third").unwrap();
    let view = h.run(&id);
    let second = &view["last_report"]["changes"][0];
    assert_eq!(second["diff"], first["diff"], "the diff masks both values");
    assert_ne!(second["fingerprint"], first["fingerprint"]);
    assert_eq!(ack_metrics(&h, "tf"), (1.0, 1.0, 0.0, 1.0));
    let (_, acks) = h.request("GET", "/api/v1/acks", None, "");
    let (_, metrics) = h.daemon().get("/metrics").unwrap();
    let (_, page) = h
        .daemon()
        .get(&format!("/probes/{}", crate::acks::encode(&id)))
        .unwrap();
    for text in [view.to_string(), acks.to_string(), metrics, page] {
        assert!(!text.contains("hunter2"), "a secret leaked: {text}");
    }
}

/// The same for a Kubernetes Secret's data, changed with kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_a_changed_secret_value_is_a_changed_drift_and_never_shown() {
    if !common::have_tool("kubectl") {
        return;
    }
    // The manifest for a password, as base64 in `data`.
    let secret = |value: &str| {
        use base64::Engine;
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\ndata:\n  password: {}\n",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    };
    let emulator = kube_emulator::KubeEmulator::start().await;
    emulator.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}",
        secret("s3cr3t-one")
    ));
    let outside = tempfile::tempdir().unwrap();
    let kubeconfig = emulator.write_kubeconfig(outside.path());
    let probes = format!(
        "[[probe]]\nname = \"k8s\"\nlayer = \"kubernetes\"\nrepo = \"infra\"\npath = \"deploy\"\nschedule = \"\"\nkubeconfig = {:?}\nwatch_debounce = \"300ms\"\n",
        kubeconfig.display().to_string()
    );
    let repo_secret = secret("s3cr3t-one");
    let home = outside.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let h = Harness::start(&[("deploy/secret.yaml", repo_secret.as_str())], &probes, "");
        assert_eq!(h.wait_verdict("k8s")["status"], "in_sync");
        let patch = |value: &str| {
            use base64::Engine;
            let data = format!(
                "{{\"data\":{{\"password\":\"{}\"}}}}",
                base64::engine::general_purpose::STANDARD.encode(value)
            );
            kubectl(
                &kubeconfig,
                &home,
                &["-n", "shop", "patch", "secret", "db", "-p", &data],
            );
        };
        patch("s3cr3t-two");
        wait_metric(&h, "driftwatch_probe_drifted", "k8s", 1.0);
        let (code, ack) = h.ack(
            "k8s",
            json!({"by": "jo", "reason": "rotating", "expires": "2h"}),
        );
        assert_eq!(code, 201, "{ack}");
        assert_eq!(ack["covers"][0]["field"], "data.password", "{ack}");
        assert_eq!(ack_metrics(&h, "k8s"), (0.0, 0.0, 1.0, 0.0));
        patch("s3cr3t-three");
        wait_metric(&h, "driftwatch_probe_ack_mismatched_resources", "k8s", 1.0);
        assert_eq!(h.metric("driftwatch_probe_drifted", "k8s"), Some(1.0));
        let view = h.probe("k8s");
        let (_, acks) = h.request("GET", "/api/v1/acks", None, "");
        let (_, metrics) = h.daemon().get("/metrics").unwrap();
        let (_, page) = h.daemon().get("/probes/k8s").unwrap();
        use base64::Engine;
        for text in [view.to_string(), acks.to_string(), metrics, page] {
            for value in ["s3cr3t-one", "s3cr3t-two", "s3cr3t-three"] {
                let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                assert!(
                    !text.contains(value) && !text.contains(&encoded),
                    "{value} leaked: {text}"
                );
            }
        }
    })
    .await
    .unwrap();
}

/// A Terraform root that always plans a create (no state yet): drifted.
fn creating_root(state: &Path) -> String {
    format!(
        "terraform {{\n  backend \"local\" {{\n    path = {:?}\n  }}\n}}\nresource \"terraform_data\" \"x\" {{\n  input = \"v\"\n}}\n",
        state.to_str().unwrap()
    )
}

#[test]
fn terraform_root_acks_wait_for_their_root_and_repo_acks_must_name_a_listed_one() {
    if !crate::terraform::have_terraform() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let cli_config = outside.path().join("empty.tfrc");
    std::fs::write(&cli_config, "").unwrap();
    let a = creating_root(&outside.path().join("a.tfstate"));
    let b = creating_root(&outside.path().join("b.tfstate"));
    let h = Harness::start(
        &[("envs/a/main.tf", &a), ("envs/b/main.tf", &b)],
        &format!(
            "[[probe]]\nname = \"tf\"\nlayer = \"terraform\"\nrepo = \"infra\"\nschedule = \"\"\nroots = [\"envs/*\"]\ncli_config_file = {:?}\n\n\
             [[probe]]\nname = \"app\"\nlayer = \"command\"\nrepo = \"infra\"\nschedule = \"\"\ncommand = [\"true\"]\n",
            cli_config.to_str().unwrap()
        ),
        "",
    );
    assert_eq!(h.wait_verdict("tf:envs/a")["status"], "drifted");
    let (code, ack) = h.ack(
        "tf:envs/a",
        json!({"by": "fay", "reason": "INC-11", "expires": "1d"}),
    );
    assert_eq!(code, 201, "{ack}");
    let id = ack["id"].as_str().unwrap().to_string();
    wait_metric(&h, "driftwatch_probe_acknowledged_resources", "tf", 1.0);

    // The root leaves the listing: its ack waits.
    crate::common::git(&h.work, &["rm", "-q", "-r", "envs/a"]);
    crate::common::git(&h.work, &["commit", "-q", "-m", "retire envs/a"]);
    h.daemon()
        .wait_for("/api/v1/acks", "the waiting ack", |_, body| {
            body.contains("\"state\":\"waiting\"")
        });

    // It comes back, with an acks file whose entries name no instance: a
    // probe the repo lacks, a root for a single-root probe, no root for a
    // multi-root one, a root the listing lacks.
    let soon = (chrono::Utc::now() + chrono::TimeDelta::days(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let entry = |instance: &str| {
        format!("[[ack]]\ninstance = \"{instance}\"\nby = \"gus\"\nreason = \"r\"\nexpires = \"{soon}\"\n[[ack.cover]]\nsubject = \"terraform_data.x\"\nfingerprint = \"fp1:0000000000000000\"\n\n")
    };
    let wrong = ["ghost", "app:prod", "tf", "tf:envs/c"];
    let file: String = wrong.iter().map(|i| entry(i)).collect();
    h.commit(
        &[("envs/a/main.tf", &a), (".driftwatch/acks.toml", &file)],
        "envs/a back, with a bad acks file",
    );
    let view = h
        .daemon()
        .wait_for("/api/v1/probes/tf%3Aenvs%2Fb", "the warnings", |_, body| {
            body.contains("ack[3].instance")
        });
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    let warnings = view["last_report"]["warnings"].to_string();
    for (index, instance) in wrong.iter().enumerate() {
        let line = index * 9 + 2;
        assert!(
            warnings.contains(&format!(
                ".driftwatch/acks.toml:{line}:12: ack[{index}].instance: names \\\"{instance}\\\""
            )),
            "{instance}: {warnings}"
        );
    }
    // The root's run-time ack applies again.
    let back = h.run("tf:envs/a");
    assert_eq!(back["status"], "drifted", "{back}");
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    let state = list["acks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .map(|a| a["state"].clone());
    assert_eq!(state, Some(json!("active")), "{list}");
    let (_, body) = h.daemon().get("/metrics").unwrap();
    assert!(
        body.contains(
            "driftwatch_probe_drifted{layer=\"terraform\",probe=\"tf\",root=\"envs/a\"} 0"
        ),
        "{body}"
    );
    // validate says the same, as errors.
    let (code, out, err) = h.cli(&["validate", "--checkout", h.work.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    for (index, instance) in wrong.iter().enumerate() {
        let line = index * 9 + 2;
        assert!(
            err.contains(&format!(
                "acks.toml:{line}:12: ack[{index}].instance: names \"{instance}\""
            )),
            "{instance}: {err}"
        );
    }
}

#[test]
fn check_with_a_relative_state_dir_reads_it_from_the_working_directory() {
    if !crate::terraform::have_terraform() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let cli_config = outside.path().join("empty.tfrc");
    std::fs::write(&cli_config, "").unwrap();
    let stack = creating_root(&outside.path().join("x.tfstate"));
    let h = Harness::start(
        &[("tf/main.tf", &stack)],
        &format!(
            "[[probe]]\nname = \"tf\"\nlayer = \"terraform\"\nrepo = \"infra\"\npath = \"tf\"\nschedule = \"\"\ncli_config_file = {:?}\n",
            cli_config.to_str().unwrap()
        ),
        "",
    );
    let id = instance_of(&h, "tf");
    assert_eq!(h.wait_verdict(&id)["status"], "drifted");
    let (code, ack) = h.ack(
        &id,
        json!({"by": "ida", "reason": "INC-13", "expires": "1d"}),
    );
    assert_eq!(code, 201, "{ack}");
    // Each spelling of the daemon's state directory, from where it is run.
    for (cwd, state_dir) in [
        (h.root.clone(), "state".to_string()),
        (h.root.clone(), "./state/".to_string()),
        (h.root.join("work"), "../state".to_string()),
    ] {
        let output = std::process::Command::new(common::driftwatch_bin())
            .args(["check", "--config"])
            .arg(&h.config)
            .args(["--state-dir", &state_dir])
            .current_dir(&cwd)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{state_dir}: {out}{err}");
        assert!(out.contains("all drift acknowledged"), "{state_dir}: {out}");
    }
    // Nothing of the state directory was made anywhere else (inside the
    // Terraform root of a checkout, or beside the work tree).
    let mut stray = Vec::new();
    let mut dirs = vec![h.root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if !path.is_dir() || path.is_symlink() {
                continue;
            }
            if path.file_name() == Some(std::ffi::OsStr::new("state"))
                && path != h.root.join("state")
            {
                stray.push(path.clone());
            }
            dirs.push(path);
        }
    }
    assert!(
        stray.is_empty(),
        "state directories made elsewhere: {stray:?}"
    );
}
