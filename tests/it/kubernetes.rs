//! The kubernetes layer against the API emulator, over real HTTP through a
//! kubeconfig: in sync despite server defaults, field-level drift, missing
//! and extra objects, secrets that never leak, ignore rules, 403s, broken
//! manifests, kustomize rendering and custom resources.

use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch::model::outcome::{ErrorReason, Outcome, ProbeError, ResourceChange, Verdict};
use serde_json::json;

use crate::common;
use kube_emulator::KubeEmulator;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubernetes");

struct Setup {
    emulator: KubeEmulator,
    tmp: tempfile::TempDir,
    checkout: PathBuf,
    kubeconfig: PathBuf,
}

/// A checkout holding `fixture` under `deploy/`, an emulator seeded with the
/// same manifests (unless `seed` is false), and a kubeconfig for it.
async fn setup(fixture: &str, seed: bool) -> Setup {
    let emulator = KubeEmulator::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("checkout");
    copy_dir(&Path::new(FIXTURES).join(fixture), &checkout.join("deploy"));
    if seed {
        seed_dir(&emulator, &checkout.join("deploy"));
    }
    let kubeconfig = emulator.write_kubeconfig(tmp.path());
    Setup {
        emulator,
        tmp,
        checkout,
        kubeconfig,
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub(crate) fn seed_dir(emulator: &KubeEmulator, dir: &Path) {
    let loaded = driftwatch::probe::kubernetes::manifest::load_dir(dir, dir).unwrap();
    assert!(
        loaded.errors.is_empty(),
        "fixtures are valid: {:?}",
        loaded.errors
    );
    for manifest in loaded.objects {
        emulator.apply_object(manifest.object());
    }
}

impl Setup {
    async fn run(&self, extra_fields: &str) -> Result<Outcome, ProbeError> {
        self.run_at("deploy", extra_fields).await
    }

    async fn run_at(&self, path: &str, extra_fields: &str) -> Result<Outcome, ProbeError> {
        let fields = format!(
            "kubeconfig = {:?}\n{extra_fields}",
            self.kubeconfig.display().to_string()
        );
        let probe =
            common::build_probe("kubernetes", "k8s", path, &fields).expect("probe config is valid");
        let cx = common::probe_context(
            "k8s",
            &self.checkout,
            path,
            self.tmp.path(),
            Duration::from_secs(60),
        );
        probe.run(&cx).await
    }
}

fn change<'a>(outcome: &'a Outcome, subject: &str) -> &'a ResourceChange {
    outcome
        .changes
        .iter()
        .find(|c| c.subject == subject)
        .unwrap_or_else(|| panic!("no change for {subject} in {:#?}", outcome.changes))
}

/// The seeding writes are recorded as `kubectl apply`; the `patch` test
/// helper edits storage directly, like a client that bypasses field
/// management, so lines changed through it still name the seeding manager.
/// Tests about the diff itself drop that suffix; tests about owners write
/// through kubectl instead.
const SEED_OWNER: &str = " (kubectl-client-side-apply, Update, 2026-01-01T00:00:00Z)";

fn plain(diff: &str) -> String {
    diff.lines()
        .map(|l| l.strip_suffix(SEED_OWNER).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_in_sync(result: Result<Outcome, ProbeError>) -> Outcome {
    let outcome = result.unwrap_or_else(|e| panic!("probe failed: {e:?}"));
    assert_eq!(
        outcome.verdict(),
        Verdict::InSync,
        "changes: {:#?}",
        outcome.changes
    );
    outcome
}

#[tokio::test]
async fn in_sync_despite_server_defaults() {
    let s = setup("app", true).await;
    // The live Deployment carries what the server added: proof the test means something.
    let live = s.emulator.get("Deployment", "shop", "web").unwrap();
    assert_eq!(live["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "1Gi"
    );
    let service = s.emulator.get("Service", "shop", "web").unwrap();
    assert!(service["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .starts_with("10.96."));
    assert_eq!(service["spec"]["ports"][1]["targetPort"], 9090);
    let secret = s.emulator.get("Secret", "shop", "credentials").unwrap();
    assert!(secret.get("stringData").is_none() && secret["data"]["password"].is_string());

    let outcome = assert_in_sync(s.run("").await);
    assert_eq!(outcome.details["objects"], 6);
    assert_eq!(outcome.details["in_sync"], 6);
    assert_eq!(s.emulator.writes(), 0, "the probe only reads");
}

#[tokio::test]
async fn replicas_changed_live_gives_a_readable_line() {
    let s = setup("app", true).await;
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(5)
    });
    let outcome = s.run("").await.unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes.len(), 1, "{:#?}", outcome.changes);
    let web = change(&outcome, "Deployment/shop/web");
    assert_eq!(web.action, "changed");
    assert_eq!(plain(&web.diff), "spec.replicas: want 3, live 5");
    assert_eq!(
        plain(&outcome.message),
        "1 of 6 objects differ (1 changed, 0 missing, 0 extra); Deployment/shop/web: spec.replicas: want 3, live 5"
    );
}

#[tokio::test]
async fn one_image_changed_is_reported_by_container_name() {
    let s = setup("app", true).await;
    s.emulator.patch("Deployment", "shop", "web", |d| {
        let containers = d["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap();
        containers.reverse(); // position must not matter
        containers[0]["image"] = json!("busybox:1.37");
    });
    let outcome = s.run("").await.unwrap();
    let web = change(&outcome, "Deployment/shop/web");
    assert_eq!(
        plain(&web.diff),
        r#"spec.template.spec.containers[name=sidecar].image: "busybox:1.36" → "busybox:1.37""#
    );
}

#[tokio::test]
async fn env_var_added_live_is_not_drift_but_changed_is() {
    let s = setup("app", true).await;
    s.emulator.patch("Deployment", "shop", "web", |d| {
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap();
        env.insert(0, json!({"name": "INJECTED_BY_WEBHOOK", "value": "1"}));
    });
    assert_in_sync(s.run("").await);

    s.emulator.patch("Deployment", "shop", "web", |d| {
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap();
        let workers = env.iter_mut().find(|e| e["name"] == "WORKERS").unwrap();
        workers["value"] = json!("8");
    });
    let outcome = s.run("").await.unwrap();
    let web = change(&outcome, "Deployment/shop/web");
    assert_eq!(
        plain(&web.diff),
        r#"spec.template.spec.containers[name=web].env[name=WORKERS].value: "4" → "8""#
    );
}

#[tokio::test]
async fn deleted_object_is_missing() {
    let s = setup("app", true).await;
    s.emulator.delete("ConfigMap", "shop", "settings");
    let outcome = s.run("").await.unwrap();
    assert_eq!(outcome.changes.len(), 1);
    let settings = change(&outcome, "ConfigMap/shop/settings");
    assert_eq!(settings.action, "missing");
    assert!(
        settings.diff.contains("config.yaml document 1"),
        "{}",
        settings.diff
    );
}

#[tokio::test]
async fn unmanaged_objects_are_extra_but_owned_and_default_ones_are_not() {
    let s = setup("app", true).await;
    // A stand-alone ReplicaSet in git makes ReplicaSets a managed kind, so the
    // Deployment's own (owned) ReplicaSet is looked at and must be skipped.
    let legacy = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: legacy, namespace: shop}\n\
                  spec:\n  replicas: 1\n  selector: {matchLabels: {app: legacy}}\n  template:\n    metadata: {labels: {app: legacy}}\n\
                  \x20   spec:\n      containers: [{name: legacy, image: legacy:1}]\n";
    std::fs::write(s.checkout.join("deploy/legacy.yaml"), legacy).unwrap();
    s.emulator.apply(legacy);
    s.emulator.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray, namespace: shop}\ndata: {a: b}\n",
    );
    s.emulator
        .apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: elsewhere, namespace: other}\n");
    assert!(s
        .emulator
        .get("ReplicaSet", "shop", "web-5d4f8c7b9")
        .is_some());
    assert!(s
        .emulator
        .get("ServiceAccount", "shop", "default")
        .is_some());
    assert!(s
        .emulator
        .get("ConfigMap", "shop", "kube-root-ca.crt")
        .is_some());

    // Off by default.
    assert_in_sync(s.run("").await);

    let outcome = s.run("detect_extra = true").await.unwrap();
    let subjects: Vec<(&str, &str)> = outcome
        .changes
        .iter()
        .map(|c| (c.subject.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(subjects, vec![("ConfigMap/shop/stray", "extra")]);

    // More namespaces can be searched.
    let outcome = s
        .run("detect_extra = true\nextra_namespaces = [\"other\"]")
        .await
        .unwrap();
    let subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec!["ConfigMap/other/elsewhere", "ConfigMap/shop/stray"]
    );
}

#[tokio::test]
async fn secret_drift_names_the_key_and_the_value_appears_nowhere() {
    use base64::Engine;
    let s = setup("app", true).await;
    let live_value = "hunter2-typed-by-hand";
    s.emulator.patch("Secret", "shop", "credentials", |secret| {
        secret["data"]["password"] =
            json!(base64::engine::general_purpose::STANDARD.encode(live_value));
        secret["data"]["added-live"] =
            json!(base64::engine::general_purpose::STANDARD.encode("another-live-value"));
    });
    let (captured, guard) = crate::common::Captured::start();
    let result = s.run("").await;
    let error_result = {
        s.emulator.forbid("configmaps");
        s.run("").await
    };
    drop(guard);

    let outcome = result.unwrap();
    assert_eq!(outcome.changes.len(), 1);
    let secret = change(&outcome, "Secret/shop/credentials");
    assert_eq!(plain(&secret.diff), "data.password: value differs (hidden)");
    let error = error_result.unwrap_err();
    assert_eq!(error.partial_changes.len(), 1, "{error:?}");

    // What the API and state file would hold, plus logs.
    let mut report = crate::common::report("k8s", "kubernetes", Ok(outcome.clone()));
    let mut everything = String::new();
    everything += &serde_json::to_string(&report).unwrap();
    report.apply_result(Err(error.clone()));
    everything += &serde_json::to_string(&report).unwrap();
    everything += &format!("{outcome:?}{error:?}{error}");
    everything += &String::from_utf8_lossy(&captured.0.lock().unwrap());
    for value in [
        live_value,
        "s3cr3t-from-git",
        "another-live-value",
        "shopkeeper",
    ] {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        assert!(!everything.contains(value), "{value} leaked");
        assert!(
            !everything.contains(&encoded),
            "{value} leaked base64-encoded"
        );
    }
}

#[tokio::test]
async fn ignore_rules_suppress_known_differences() {
    let s = setup("app", true).await;
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(7); // an autoscaler owns this
        d["spec"]["template"]["spec"]["containers"][1]["image"] = json!("busybox:1.37");
    });
    let rules = "[[ignore]]\ngroup = \"apps\"\nkind = \"Deployment\"\nname = \"w*\"\njson_pointers = [\"/spec/replicas\"]\n";
    let outcome = s.run(rules).await.unwrap();
    let web = change(&outcome, "Deployment/shop/web");
    assert_eq!(
        plain(&web.diff),
        r#"spec.template.spec.containers[name=sidecar].image: "busybox:1.36" → "busybox:1.37""#
    );

    let both = format!("{rules}[[ignore]]\nkind = \"Deployment\"\njson_pointers = [\"/spec/template/spec/containers/sidecar/image\"]\n");
    assert_in_sync(s.run(&both).await);

    // A rule scoped to another namespace does nothing here.
    let elsewhere = "[[ignore]]\nnamespace = \"prod\"\njson_pointers = [\"/spec\"]\n";
    assert_eq!(s.run(elsewhere).await.unwrap().changes.len(), 1);
}

#[tokio::test]
async fn forbidden_type_is_an_error_naming_it_and_others_are_still_compared() {
    let s = setup("app", true).await;
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(5)
    });
    s.emulator.forbid("configmaps");
    let error = s.run("").await.unwrap_err();
    assert_eq!(error.reason, ErrorReason::Api);
    assert!(
        error
            .message
            .contains("forbidden: cannot get configmaps \"settings\" in namespace \"shop\""),
        "{}",
        error.message
    );
    let subjects: Vec<&str> = error
        .partial_changes
        .iter()
        .map(|c| c.subject.as_str())
        .collect();
    assert_eq!(subjects, vec!["Deployment/shop/web"]);

    // With extra detection the type is listed, and the verb says so.
    let error = s.run("detect_extra = true").await.unwrap_err();
    assert!(
        error
            .message
            .contains("forbidden: cannot list configmaps in namespace \"shop\""),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn malformed_document_is_an_error_naming_file_and_index() {
    let s = setup("app", true).await;
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(5)
    });
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine, namespace: shop}\n---\n\
                  apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n";
    std::fs::create_dir_all(s.checkout.join("deploy/more")).unwrap();
    std::fs::write(s.checkout.join("deploy/more/broken.yaml"), broken).unwrap();
    let error = s.run("").await.unwrap_err();
    assert_eq!(error.reason, ErrorReason::Input);
    assert!(
        error.message.contains("more/broken.yaml:"),
        "{}",
        error.message
    );
    assert!(error.message.contains("document 2"), "{}", error.message);
    let subjects: Vec<(&str, &str)> = error
        .partial_changes
        .iter()
        .map(|c| (c.subject.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(
        subjects,
        vec![
            ("ConfigMap/shop/fine", "missing"),
            ("Deployment/shop/web", "changed")
        ]
    );
}

#[tokio::test]
async fn kustomize_overlay_through_render() {
    if !common::have_tool("kubectl") {
        return;
    }
    let s = setup("kustomize", false).await;
    let rendered = std::process::Command::new("kubectl")
        .args(["kustomize", "overlays/prod"])
        .current_dir(s.checkout.join("deploy"))
        .output()
        .unwrap();
    assert!(rendered.status.success());
    s.emulator
        .apply(&String::from_utf8(rendered.stdout).unwrap());
    let render = "render = [\"kubectl\", \"kustomize\", \"overlays/prod\"]";
    let outcome = assert_in_sync(s.run(render).await);
    assert_eq!(outcome.details["objects"], 2);

    s.emulator.patch("Deployment", "prod", "api", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/api:1.0");
    });
    s.emulator.patch("ConfigMap", "prod", "api-settings", |c| {
        c["data"]["level"] = json!("debug")
    });
    let outcome = s.run(render).await.unwrap();
    assert_eq!(
        plain(&change(&outcome, "Deployment/prod/api").diff),
        r#"spec.template.spec.containers[name=api].image: "example/api:1.2" → "example/api:1.0""#
    );
    assert_eq!(
        plain(&change(&outcome, "ConfigMap/prod/api-settings").diff),
        r#"data.level: "info" → "debug""#
    );

    // A failing render is an error, never "in sync".
    let error = s
        .run("render = [\"kubectl\", \"kustomize\", \"overlays/nope\"]")
        .await
        .unwrap_err();
    assert_eq!(error.reason, ErrorReason::ExitCode);
    assert!(
        error.message.contains("kubectl kustomize overlays/nope"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn custom_resource_kind_comes_from_discovery() {
    let s = setup("app", true).await;
    s.emulator
        .patch("Widget", "shop", "gizmo", |w| w["spec"]["size"] = json!(4));
    let outcome = s.run("include_kinds = [\"*.example.com\"]").await.unwrap();
    assert_eq!(outcome.details["objects"], 1);
    assert_eq!(
        plain(&change(&outcome, "Widget/shop/gizmo").diff),
        "spec.size: want 3, live 4"
    );
    assert!(
        s.emulator
            .paths()
            .iter()
            .any(|p| p == "/apis/example.com/v1"),
        "{:?}",
        s.emulator.paths()
    );

    // A version the cluster does not serve is reported as such.
    let v2 =
        "apiVersion: example.com/v2\nkind: Widget\nmetadata: {name: future, namespace: shop}\n";
    std::fs::write(s.checkout.join("deploy/future.yaml"), v2).unwrap();
    let error = s
        .run("include_kinds = [\"*.example.com\"]")
        .await
        .unwrap_err();
    assert_eq!(error.reason, ErrorReason::Api);
    assert!(
        error
            .message
            .contains("does not serve apiVersion example.com/v2 (kind Widget)"),
        "{}",
        error.message
    );
    assert_eq!(error.partial_changes.len(), 1);
}

/// An `include_kinds` pattern that selects no declared kind (a typo) is a
/// warning on the report; the kinds it was meant beside are still compared.
#[tokio::test]
async fn an_include_kinds_pattern_that_selects_nothing_is_a_warning() {
    let s = setup("app", true).await;
    s.emulator
        .patch("Widget", "shop", "gizmo", |w| w["spec"]["size"] = json!(4));
    let outcome = s
        .run("include_kinds = [\"*.example.com\", \"Ingres\"]")
        .await
        .unwrap();
    assert_eq!(outcome.details["objects"], 1);
    assert_eq!(outcome.changes.len(), 1, "{outcome:?}");
    assert_eq!(
        outcome.warnings,
        ["include_kinds[1]: \"Ingres\" matches no kind the manifests declare, so it selects nothing; fix the pattern (Kind or Kind.group) or remove it"]
    );
    let outcome = s.run("include_kinds = [\"*.example.com\"]").await.unwrap();
    assert_eq!(outcome.warnings, Vec::<String>::new());
}

#[tokio::test]
async fn many_objects_are_listed_in_pages_and_few_are_fetched() {
    let s = setup("app", true).await;
    let mut text = String::new();
    for i in 0..10 {
        text += &format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bulk-{i}, namespace: bulk}}\ndata: {{i: \"{i}\"}}\n");
    }
    std::fs::write(s.checkout.join("deploy/bulk.yaml"), &text).unwrap();
    s.emulator.apply(&text);
    s.emulator.reset_requests();
    assert_in_sync(s.run("page_size = 4\nwatch = false").await);
    let paths = s.emulator.paths();
    let bulk: Vec<&String> = paths
        .iter()
        .filter(|p| p.starts_with("/api/v1/namespaces/bulk/"))
        .collect();
    assert_eq!(bulk.len(), 3, "10 objects in pages of 4: {bulk:?}");
    assert!(bulk.iter().all(|p| p.contains("limit=4")));
    assert_eq!(bulk.iter().filter(|p| p.contains("continue=")).count(), 2);
    // The shop's few objects were fetched one by one.
    assert!(
        paths
            .iter()
            .any(|p| p == "/apis/apps/v1/namespaces/shop/deployments/web"),
        "{paths:?}"
    );

    // Discovery is cached across runs of one probe instance (refreshed only on a miss).
    let probe = common::build_probe(
        "kubernetes",
        "k8s",
        "deploy",
        &format!("kubeconfig = {:?}", s.kubeconfig.display().to_string()),
    )
    .unwrap();
    let cx = common::probe_context(
        "k8s",
        &s.checkout,
        "deploy",
        s.tmp.path(),
        Duration::from_secs(60),
    );
    probe.run(&cx).await.unwrap();
    s.emulator.reset_requests();
    probe.run(&cx).await.unwrap();
    let discovery = s
        .emulator
        .paths()
        .iter()
        .filter(|p| {
            p.as_str() == "/api/v1"
                || p.starts_with("/apis/apps/v1?")
                || p.as_str() == "/apis/apps/v1"
        })
        .count();
    assert_eq!(discovery, 0, "{:?}", s.emulator.paths());
}

#[tokio::test]
async fn context_namespace_applies_to_objects_without_one() {
    let s = setup("app", true).await;
    std::fs::write(
        s.checkout.join("deploy/plain.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: \"1\"}\n",
    )
    .unwrap();
    s.emulator.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain, namespace: other}\ndata: {a: \"1\"}\n");
    // The current context's namespace is `default`: not there.
    let outcome = s.run("").await.unwrap();
    assert_eq!(
        change(&outcome, "ConfigMap/default/plain").action,
        "missing"
    );
    assert_in_sync(s.run("context = \"elsewhere\"").await);
    assert_in_sync(s.run("default_namespace = \"other\"").await);
}

#[tokio::test]
async fn unreachable_cluster_is_an_error() {
    let s = setup("app", false).await;
    let port = common::free_port();
    std::fs::write(
        &s.kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
                 users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"),
    )
    .unwrap();
    let error = s.run("request_timeout = \"5s\"").await.unwrap_err();
    assert!(
        matches!(error.reason, ErrorReason::Unreachable | ErrorReason::Api),
        "{error:?}"
    );
    assert!(error.message.contains("discover"), "{}", error.message);
}

/// `namespaces` files `team-NN.yaml` with Deployments, Services and
/// ConfigMaps (`per_kind` of each per namespace), for the benchmarks.
pub(crate) fn write_bench_manifests(deploy: &Path, namespaces: usize, per_kind: [usize; 3]) {
    std::fs::create_dir_all(deploy).unwrap();
    for n in 0..namespaces {
        let ns = format!("team-{n:02}");
        let mut text = String::new();
        for i in 0..per_kind[0] {
            text += &format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i}, namespace: {ns}, labels: {{app: app-{i}}}}}\n\
                 spec:\n  replicas: 2\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n\
                 \x20   spec:\n      containers:\n      - name: app\n        image: registry.example/app-{i}:1.{n}\n\
                 \x20       ports: [{{containerPort: 8080}}]\n        env: [{{name: TEAM, value: {ns}}}]\n\
                 \x20       resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}\n"
            );
        }
        for i in 0..per_kind[1] {
            text += &format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: {ns}}}\n\
                 spec:\n  selector: {{app: app-{i}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
            );
        }
        for i in 0..per_kind[2] {
            text += &format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg-{i}, namespace: {ns}}}\n\
                 data: {{setting: \"value-{i}\", team: {ns}}}\n"
            );
        }
        std::fs::write(deploy.join(format!("{ns}.yaml")), text).unwrap();
    }
}

/// Peak and current resident set size of this process, in KiB.
pub(crate) fn rss_kib() -> (u64, u64) {
    rss_kib_of("self")
}

/// Peak and current resident set size of process `pid` ("self" or a number), in KiB.
pub(crate) fn rss_kib_of(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The benchmark behind scripts/bench-kubernetes: 5,000 objects (Deployments,
/// Services, ConfigMaps) across 50 namespaces, 20 ms per API request; the
/// probe's LIST/GET strategy against one GET per object (kubediff's way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run scripts/bench-kubernetes"]
async fn bench_5000_objects_across_50_namespaces() {
    let emulator = KubeEmulator::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("checkout");
    let deploy = checkout.join("deploy");
    std::fs::create_dir_all(&deploy).unwrap();
    let (namespaces, per_kind) = (50, [34, 33, 33]);
    write_bench_manifests(&deploy, namespaces, per_kind);
    seed_dir(&emulator, &deploy);
    let kubeconfig = emulator.write_kubeconfig(tmp.path());
    emulator.set_latency(Duration::from_millis(20));
    let objects: usize = namespaces * per_kind.iter().sum::<usize>();

    let run = |fields: String| {
        let checkout = checkout.clone();
        let tmp = tmp.path().to_path_buf();
        let kubeconfig = kubeconfig.clone();
        async move {
            let fields = format!(
                "kubeconfig = {:?}\n{fields}",
                kubeconfig.display().to_string()
            );
            let probe = common::build_probe("kubernetes", "bench", "deploy", &fields).unwrap();
            let cx =
                common::probe_context("bench", &checkout, "deploy", &tmp, Duration::from_secs(600));
            let started = std::time::Instant::now();
            let outcome = probe.run(&cx).await.expect("bench run succeeds");
            (started.elapsed(), outcome)
        }
    };

    let (peak_before, rss_before) = rss_kib();
    emulator.reset_requests();
    // LIST per run (`watch = false`); the watch-fed cache has its own benchmark.
    let (elapsed, outcome) = run("watch = false".to_string()).await;
    let requests = emulator.requests();
    let (peak_after, _) = rss_kib();
    assert_eq!(
        outcome.verdict(),
        Verdict::InSync,
        "{:?}",
        outcome.changes.first()
    );
    assert_eq!(outcome.details["objects"], objects);

    emulator.reset_requests();
    let (baseline_elapsed, baseline) =
        run("list_threshold = 1000000\nwatch = false".to_string()).await;
    let baseline_requests = emulator.requests();
    assert_eq!(baseline.verdict(), Verdict::InSync);

    println!("kubernetes probe benchmark: {objects} objects (Deployments, Services, ConfigMaps) in {namespaces} namespaces, 20 ms per API request, concurrency 8");
    println!("  driftwatch (LIST per type x namespace): wall {:.2} s, {requests} API requests (3 types x {namespaces} namespaces = {})", elapsed.as_secs_f64(), 3 * namespaces);
    println!("  baseline (one GET per object, kubediff way, same concurrency): wall {:.2} s, {baseline_requests} API requests", baseline_elapsed.as_secs_f64());
    println!(
        "  ratio: {:.1}x faster, {:.1}x fewer requests",
        baseline_elapsed.as_secs_f64() / elapsed.as_secs_f64(),
        baseline_requests as f64 / requests as f64
    );
    println!("  RSS: before run {:.1} MiB (emulator holding {} objects + test), peak after run {:.1} MiB (peak before {:.1} MiB)",
        rss_before as f64 / 1024.0, emulator.object_count(), peak_after as f64 / 1024.0, peak_before as f64 / 1024.0);
}

/// A checkout whose only manifest is `yaml`, and an emulator holding `live`
/// (written as the JSON kubectl would have sent, independent of our reader).
async fn single(yaml: &str, live: serde_json::Value) -> Setup {
    let s = setup("app", false).await;
    let deploy = s.checkout.join("deploy");
    std::fs::remove_dir_all(&deploy).unwrap();
    std::fs::create_dir_all(&deploy).unwrap();
    std::fs::write(deploy.join("object.yaml"), yaml).unwrap();
    if !live.is_null() {
        s.emulator.apply_object(live);
    }
    s
}

/// Issue example: an unquoted `defaultMode: 0755` is the integer 493 to
/// kubectl (YAML 1.1), so the object is in sync; a live change is a number line.
#[tokio::test]
async fn yaml_1_1_octal_is_read_as_kubectl_reads_it() {
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 1\n\
                \x20 selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n\
                \x20     enableServiceLinks: off\n      containers: [{name: web, image: \"nginx:1.25\"}]\n\
                \x20     volumes:\n      - name: conf\n        configMap: {name: conf, defaultMode: 0755}\n";
    let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"enableServiceLinks": false, "containers": [{"name": "web", "image": "nginx:1.25"}],
                     "volumes": [{"name": "conf", "configMap": {"name": "conf", "defaultMode": 493}}]}}}});
    let s = single(yaml, live).await;
    assert_in_sync(s.run("").await);
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"] = json!(420)
    });
    let outcome = s.run("").await.unwrap();
    assert_eq!(
        plain(&change(&outcome, "Deployment/shop/web").diff),
        "spec.template.spec.volumes[name=conf].configMap.defaultMode: want 493, live 420"
    );
}

#[tokio::test]
async fn duplicate_keys_are_an_error_naming_file_line_and_document() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine, namespace: shop}\n---\n\
                apiVersion: v1\nkind: ConfigMap\nmetadata: {name: twice, namespace: shop}\ndata:\n  mode: fast\n  mode: slow\n";
    let s = single(yaml, json!(null)).await;
    let error = s.run("").await.unwrap_err();
    assert_eq!(error.reason, ErrorReason::Input);
    assert!(
        error.message.contains(
            "object.yaml:10: document 2: invalid YAML: mapping key \"mode\" already defined at line 9"
        ),
        "{}",
        error.message
    );
}

/// Issue example: a Secret the API server would refuse is an error naming
/// file, document and field, never drift, and its values appear nowhere.
#[tokio::test]
async fn secret_the_api_server_would_reject_is_an_error() {
    let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData:\n  port: 5432\n";
    let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
        "data": {"port": "OTk5OQ=="}});
    let s = single(yaml, live).await;
    let error = s.run("").await.unwrap_err();
    assert_eq!(error.reason, ErrorReason::Input);
    assert_eq!(
        error.message,
        "object.yaml:5: document 1: stringData.port: must be a string, not a number (the API server rejects it; quote the value)"
    );
    assert!(error.partial_changes.is_empty(), "{error:?}");

    std::fs::write(
        s.checkout.join("deploy/object.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\ndata:\n  port: \"5432 plain\"\n",
    )
    .unwrap();
    let error = s.run("").await.unwrap_err();
    assert!(
        error
            .message
            .starts_with("object.yaml:5: document 1: data.port: is not valid base64"),
        "{}",
        error.message
    );
    assert!(!format!("{error:?}").contains("5432"));
}

/// Issue example: DNS on TCP and UDP shares port 53; items are keyed by port
/// and protocol, so the in-sync object is in sync and a deleted UDP port is named.
#[tokio::test]
async fn service_ports_are_identified_by_port_and_protocol() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: shop}\nspec:\n  selector: {app: dns}\n  ports:\n\
                \x20 - {name: dns-tcp, port: 53, protocol: TCP}\n  - {name: dns-udp, port: 53, protocol: UDP}\n";
    let live = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": "shop"},
        "spec": {"selector": {"app": "dns"}, "ports": [
            {"name": "dns-udp", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}});
    let s = single(yaml, live).await;
    assert_in_sync(s.run("").await);
    s.emulator.patch("Service", "shop", "dns", |svc| {
        svc["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .retain(|p| p["protocol"] == "TCP");
    });
    let outcome = s.run("").await.unwrap();
    assert_eq!(
        change(&outcome, "Service/shop/dns").diff,
        r#"spec.ports[port=53,protocol=UDP]: want {"name":"dns-udp","port":53,"protocol":"UDP"}, live absent"#
    );
}

/// Issue example: tolerations are an atomic list; one appended live
/// (tolerate everything) is drift, shown as the whole list.
#[tokio::test]
async fn a_toleration_appended_live_is_drift() {
    let s = setup("app", true).await;
    let yaml = std::fs::read_to_string(s.checkout.join("deploy/deployment.yaml")).unwrap();
    let yaml = yaml.replace(
        "      volumes:\n",
        "      tolerations:\n        - {key: dedicated, operator: Equal, value: web, effect: NoSchedule}\n      volumes:\n",
    );
    std::fs::write(s.checkout.join("deploy/deployment.yaml"), &yaml).unwrap();
    seed_dir(&s.emulator, &s.checkout.join("deploy"));
    assert_in_sync(s.run("").await);
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["template"]["spec"]["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"operator": "Exists"}));
    });
    let outcome = s.run("").await.unwrap();
    assert_eq!(
        plain(&change(&outcome, "Deployment/shop/web").diff),
        r#"spec.template.spec.tolerations: want [{"effect":"NoSchedule","key":"dedicated","operator":"Equal","value":"web"}], live [{"effect":"NoSchedule","key":"dedicated","operator":"Equal","value":"web"},{"operator":"Exists"}]"#
    );
}

/// Custom resources: list identity comes from the CRD's openAPIV3Schema in
/// the cluster (`spec.parts` is keyed by name there, `spec.steps` atomic);
/// without the CRD every list is atomic, as the API treats it.
#[tokio::test]
async fn custom_resource_lists_follow_the_crd_schema() {
    let yaml =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: gizmo, namespace: shop}\n\
                spec:\n  size: 3\n  parts: [{name: a, size: 1}]\n  steps: [cut, glue]\n";
    let live = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "gizmo", "namespace": "shop"},
        "spec": {"size": 3, "parts": [{"name": "b", "size": 9}, {"name": "a", "size": 1}], "steps": ["cut", "glue"]}});
    let s = single(yaml, live).await;
    assert!(s
        .emulator
        .get("CustomResourceDefinition", "", "widgets.example.com")
        .is_some());
    // A part added live is kept by apply (keyed list): in sync.
    assert_in_sync(s.run("").await);
    s.emulator.patch("Widget", "shop", "gizmo", |w| {
        w["spec"]["parts"][1]["size"] = json!(2);
        w["spec"]["steps"] = json!(["cut", "glue", "paint"]);
    });
    let outcome = s.run("").await.unwrap();
    assert_eq!(
        plain(&change(&outcome, "Widget/shop/gizmo").diff),
        "spec.parts[name=a].size: want 1, live 2\nspec.steps: want [\"cut\",\"glue\"], live [\"cut\",\"glue\",\"paint\"]"
    );
    // Without the CRD, parts is atomic: the extra live part is drift too.
    s.emulator.patch("Widget", "shop", "gizmo", |w| {
        w["spec"]["parts"][1]["size"] = json!(1);
        w["spec"]["steps"] = json!(["cut", "glue"]);
    });
    assert_in_sync(s.run("").await);
    s.emulator
        .forbid("customresourcedefinitions.apiextensions.k8s.io");
    let outcome = s.run("").await.unwrap();
    assert!(
        change(&outcome, "Widget/shop/gizmo")
            .diff
            .starts_with("spec.parts: want [{\"name\":\"a\",\"size\":1}], live"),
        "{:#?}",
        outcome.changes
    );
}

impl Setup {
    /// Runs kubectl against the emulator (a private HOME keeps its cache
    /// here). Blocking: call from a multi-threaded test so the emulator serves.
    fn kubectl(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.tmp.path())
            .output()
            .expect("kubectl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "kubectl {args:?}: {text}");
        text
    }
}

/// "Who changed it": writes made with kubectl (scale, an edit-style patch,
/// client-side and server-side apply) are recorded by the emulator in
/// managedFields as a real API server records them, and each drifted field
/// names the manager, operation and time that own its live value. The
/// probe itself writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_drifted_field_names_who_changed_it() {
    if !common::have_tool("kubectl") {
        return;
    }
    let s = setup("app", true).await;
    assert_in_sync(s.run("").await);
    s.kubectl(&["-n", "shop", "scale", "deployment", "web", "--replicas=5"]);
    s.kubectl(&[
        "-n", "shop", "patch", "deployment", "web", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.37"}]}}}}"#,
    ]);
    s.kubectl(&[
        "-n",
        "shop",
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/template/spec/containers/0/env/1"}]"#,
    ]);
    let live = s.emulator.get("Deployment", "shop", "web").unwrap();
    let managers: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl-patch"), "{managers:?}");

    let writes = s.emulator.writes();
    let outcome = s.run("").await.unwrap();
    assert_eq!(s.emulator.writes(), writes, "the probe only reads");
    let web = change(&outcome, "Deployment/shop/web");
    let time = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z";
    let expected = [
        format!(r"^spec\.replicas: want 3, live 5 \(kubectl, Update, {time}\)$"),
        format!(
            r#"^spec\.template\.spec\.containers\[name=sidecar\]\.image: "busybox:1\.36" → "busybox:1\.37" \(kubectl-patch, Update, {time}\)$"#
        ),
        // A value gone live has no owner to name: nothing is guessed.
        r#"^spec\.template\.spec\.containers\[name=web\]\.env\[name=WORKERS\]: want \{"name":"WORKERS","value":"4"\}, live absent$"#.to_string(),
    ];
    let lines: Vec<&str> = web.diff.lines().collect();
    assert_eq!(lines.len(), 3, "{}", web.diff);
    for pattern in &expected {
        let re = regex::Regex::new(pattern).unwrap();
        assert!(
            lines.iter().any(|l| re.is_match(l)),
            "{pattern} in\n{}",
            web.diff
        );
    }
    // The JSON report carries the same per field.
    let report = common::report("k8s", "kubernetes", Ok(outcome.clone()));
    let json = serde_json::to_value(&report).unwrap();
    let fields = json
        .pointer("/changes/0/fields")
        .and_then(|f| f.as_array())
        .unwrap_or_else(|| panic!("{json:#}"));
    let replicas = fields
        .iter()
        .find(|f| f["field"] == "spec.replicas")
        .unwrap();
    assert_eq!(replicas["manager"], "kubectl");
    assert_eq!(replicas["operation"], "Update");
    assert!(regex::Regex::new(&format!("^{time}$"))
        .unwrap()
        .is_match(replicas["time"].as_str().unwrap()));
    let env = fields
        .iter()
        .find(|f| f["field"] == "spec.template.spec.containers[name=web].env[name=WORKERS]")
        .unwrap();
    assert!(env.get("manager").is_none(), "{env}");

    // kubectl apply of the git manifest (client-side) puts replicas and the
    // image back and takes them over; a server-side apply by another manager
    // then owns what it sets.
    s.kubectl(&[
        "apply",
        "--validate=false",
        "-f",
        s.checkout.join("deploy/deployment.yaml").to_str().unwrap(),
    ]);
    let outcome = s.run("").await.unwrap();
    assert_eq!(outcome.changes.len(), 0, "{:#?}", outcome.changes);
    let hotfix = s.tmp.path().join("hotfix.yaml");
    std::fs::write(
        &hotfix,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 9\n",
    )
    .unwrap();
    s.kubectl(&[
        "apply",
        "--validate=false",
        "--server-side",
        "--force-conflicts",
        "--field-manager=hotfix",
        "-f",
        hotfix.to_str().unwrap(),
    ]);
    let outcome = s.run("").await.unwrap();
    let re = regex::Regex::new(&format!(
        r"^spec\.replicas: want 3, live 9 \(hotfix, Apply, {time}\)$"
    ))
    .unwrap();
    let diff = &change(&outcome, "Deployment/shop/web").diff;
    assert!(re.is_match(diff), "{diff}");
}

/// The emulator's write side behaves like an API server for kubectl: every
/// write takes the next resourceVersion from one global counter, a stale
/// resourceVersion is a 409, and `kubectl scale` reads and writes the scale
/// subresource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_accepts_kubectl_writes_like_an_api_server() {
    if !common::have_tool("kubectl") {
        return;
    }
    let s = setup("app", true).await;
    let seeded = s.emulator.get("ConfigMap", "shop", "settings").unwrap();
    let before: u64 = seeded["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    s.kubectl(&["-n", "shop", "scale", "deployment", "web", "--replicas=2"]);
    let after = s.emulator.get("Deployment", "shop", "web").unwrap();
    let rv: u64 = after["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > before, "{rv} > {before}");
    assert_eq!(after["spec"]["replicas"], 2);
    let scale = s.kubectl(&[
        "-n",
        "shop",
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/shop/deployments/web/scale",
    ]);
    assert!(scale.contains("\"replicas\":2"), "{scale}");
    // A replace with an old resourceVersion is refused.
    let mut stale = after.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let file = s.tmp.path().join("stale.json");
    std::fs::write(&file, stale.to_string()).unwrap();
    let output = std::process::Command::new("kubectl")
        .args(["replace", "--validate=false", "-f", file.to_str().unwrap()])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.tmp.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the object has been modified"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Create and delete.
    let config = s.tmp.path().join("new.yaml");
    std::fs::write(&config, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh, namespace: shop}\ndata: {a: \"1\"}\n").unwrap();
    s.kubectl(&["create", "--validate=false", "-f", config.to_str().unwrap()]);
    let fresh = s.emulator.get("ConfigMap", "shop", "fresh").unwrap();
    assert_eq!(
        fresh["metadata"]["managedFields"][0]["manager"],
        "kubectl-create"
    );
    s.kubectl(&["-n", "shop", "delete", "configmap", "fresh"]);
    assert!(s.emulator.get("ConfigMap", "shop", "fresh").is_none());
}
