//! `driftwatch validate` checks every path a probe names inside the
//! checkout: with a work tree at hand (`--checkout`) a missing one is an
//! error at the `file:line:col` of its key; without one, a warning names it.
//! The real binary, real git work tree, one probe per kind of path key.

use std::path::Path;
use std::process::Command;

use crate::common;

/// One probe naming one path that is not there: (probe, layer, probe path,
/// layer fields, key, what the key's value starts with, what the error
/// says, how the warning without a work tree names the path — `None` for
/// root patterns, which are listed rather than named one by one).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const CASES: &[Case] = &[
    // The issue's example: a var file missing from the checkout.
    ("tf-var", "terraform", "tf", r#"var_files = ["prod.tfvars"]"#, "var_files[0]", "\"prod.tfvars\"", r#""tf/prod.tfvars" does not exist in the checkout"#, Some("tf/prod.tfvars")),
    ("tf-root", "terraform", "tf", r#"roots = ["envs/a", "envs/gone"]"#, "roots[1]", "\"envs/gone\"", r#""tf/envs/gone" does not exist"#, Some("tf/envs/gone")),
    ("tf-root-var", "terraform", "tf", "roots = [\"envs/*\"]\nvar_files = [\"common.tfvars\"]", "var_files[0]", "\"common.tfvars\"", r#""tf/envs/b/common.tfvars" does not exist"#, Some("tf/<each root>/common.tfvars")),
    ("tf-backend", "terraform", "tf", r#"backend_config = ["key=value", "backend.hcl"]"#, "backend_config[1]", "\"backend.hcl\"", r#""tf/backend.hcl" does not exist"#, Some("tf/backend.hcl")),
    // A root pattern matching nothing while others match (issue 23's gap).
    ("tf-glob-gone", "terraform", "tf", r#"roots = ["envs/*", "stacks/*/prod"]"#, "roots[1]", "\"stacks/*/prod\"", r#"root pattern "stacks/*/prod" matches no directory in this checkout, so nothing it names is checked; fix the pattern"#, None),
    ("tf-glob-no-tf", "terraform", "tf", r#"roots = ["envs/*", "docs/*"]"#, "roots[1]", "\"docs/*\"", r#"root pattern "docs/*" matches only "docs/guide", which holds no *.tf"#, None),
    ("tf-literal-no-tf", "terraform", "tf", r#"roots = ["envs/a", "docs"]"#, "roots[1]", "\"docs\"", r#"root pattern "docs" matches only "docs", which holds no *.tf"#, Some("tf/docs")),
    ("tf-no-roots", "terraform", "tf", r#"roots = ["nothing/*"]"#, "roots", "[", "match no directory with Terraform files", None),
    ("ans-playbook", "ansible", "ansible", "playbooks = [\"site.yml\", \"gone.yml\"]\ninventory = \"hosts.ini\"", "playbooks[1]", "\"gone.yml\"", r#""ansible/gone.yml" does not exist"#, Some("ansible/gone.yml")),
    ("ans-inventory", "ansible", "ansible", "playbooks = [\"site.yml\"]\ninventory = [\"hosts.ini\", \"inventories/gone\"]", "inventory[1]", "\"inventories/gone\"", r#""ansible/inventories/gone" does not exist"#, Some("ansible/inventories/gone")),
    ("ans-vars", "ansible", "ansible", "playbooks = [\"site.yml\"]\ninventory = \"hosts.ini\"\nextra_vars_files = [\"vars/gone.yml\"]", "extra_vars_files[0]", "\"vars/gone.yml\"", r#""ansible/vars/gone.yml" does not exist"#, Some("ansible/vars/gone.yml")),
    ("k8s-render", "kubernetes", "k8s", r#"render = ["./render.sh", "prod"]"#, "render[0]", "\"./render.sh\"", r#""k8s/render.sh" does not exist"#, Some("k8s/render.sh")),
    ("k8s-kustomize", "kubernetes", "k8s", r#"render = ["kubectl", "kustomize", "overlays/gone"]"#, "render[2]", "\"overlays/gone\"", r#""k8s/overlays/gone" does not exist"#, Some("k8s/overlays/gone")),
    // `helm template`: the chart, a values file, a directory that is no chart.
    ("k8s-helm-chart", "kubernetes", "k8s", r#"render = ["helm", "template", "web", "./charts/gone"]"#, "render[3]", "\"./charts/gone\"", r#""k8s/charts/gone" does not exist"#, Some("k8s/charts/gone")),
    ("k8s-helm-values", "kubernetes", "k8s", r#"render = ["helm", "template", "web", "./charts/web", "-f", "values/gone.yaml"]"#, "render[5]", "\"values/gone.yaml\"", r#""k8s/values/gone.yaml" does not exist"#, Some("k8s/values/gone.yaml")),
    ("k8s-helm-not-chart", "kubernetes", "k8s", r#"render = ["helm", "template", "web", "overlays/prod"]"#, "render[3]", "\"overlays/prod\"", r#""k8s/overlays/prod" holds no Chart.yaml"#, None),
    ("cmd-program", "command", "cmd", r#"command = ["./gone.sh"]"#, "command[0]", "\"./gone.sh\"", r#""cmd/gone.sh" does not exist"#, Some("cmd/gone.sh")),
    ("cmd-not-executable", "command", "cmd", r#"command = ["./plain.sh"]"#, "command[0]", "\"./plain.sh\"", r#""cmd/plain.sh" is not executable"#, Some("cmd/plain.sh")),
    ("cmd-workdir", "command", "cmd", "command = [\"./check.sh\"]\nworkdir = \"sub\"", "command[0]", "\"./check.sh\"", r#""cmd/sub/check.sh" does not exist"#, Some("cmd/sub/check.sh")),
    ("cmd-workdir-gone", "command", "cmd", "command = [\"true\"]\nworkdir = \"gone\"", "workdir", "\"gone\"", r#""cmd/gone" does not exist"#, Some("cmd/gone")),
    ("no-path", "command", "gone", r#"command = ["true"]"#, "path", "\"gone\"", r#""gone" does not exist"#, Some("gone")),
];

/// Probes whose every path is there: no error names them.
const FINE: &[(&str, &str, &str, &str)] = &[
    (
        "tf-fine",
        "terraform",
        "tf",
        "roots = [\"envs/*\", \"envs/a\"]\nbackend_config = [\"key=value\"]",
    ),
    (
        "ans-fine",
        "ansible",
        "ansible",
        "playbooks = [\"site.yml\"]\ninventory = [\"hosts.ini\", \"web1,web2,\"]",
    ),
    (
        "k8s-fine",
        "kubernetes",
        "k8s",
        r#"render = ["kubectl", "kustomize", "overlays/prod"]"#,
    ),
    (
        "k8s-helm-fine",
        "kubernetes",
        "k8s",
        r#"render = ["helm", "template", "web", "charts/web", "--values=charts/web/values.yaml", "--set", "a=b"]"#,
    ),
    (
        "k8s-helm-repo",
        "kubernetes",
        "k8s",
        r#"render = ["helm", "template", "web", "bitnami/nginx", "-f", "https://example.com/values.yaml"]"#,
    ),
    (
        "k8s-kinds",
        "kubernetes",
        "k8s-plain",
        r#"include_kinds = ["Deployment", "Ingres"]"#,
    ),
    (
        "cmd-fine",
        "command",
        "cmd",
        "command = [\"./check.sh\"]\nshell = false",
    ),
    (
        "cmd-shell",
        "command",
        "cmd",
        "command = \"./gone.sh | true\"\nshell = true",
    ),
];

const TF: &str = "terraform {\n}\n";

fn work_tree(dir: &Path) {
    common::init_repo(
        dir,
        &[
            ("tf/main.tf", TF),
            ("tf/envs/a/main.tf", TF),
            ("tf/envs/a/common.tfvars", ""),
            ("tf/envs/b/main.tf", TF),
            ("tf/docs/guide/README.md", "# not a root\n"),
            ("ansible/site.yml", "- hosts: all\n  tasks: []\n"),
            ("ansible/hosts.ini", "web1\n"),
            ("k8s/overlays/prod/kustomization.yaml", "resources: []\n"),
            (
                "k8s/charts/web/Chart.yaml",
                "apiVersion: v2\nname: web\nversion: 0.1.0\n",
            ),
            ("k8s/charts/web/values.yaml", "replicas: 1\n"),
            (
                "k8s-plain/web.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
            ),
            ("cmd/check.sh", "#!/bin/sh\nexit 0\n"),
            ("cmd/plain.sh", "#!/bin/sh\nexit 0\n"),
            ("cmd/sub/.keep", ""),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("cmd/check.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn config_text(state: &Path) -> String {
    let mut text = format!(
        "state_dir = \"{}\"\n\n[[repo]]\nname = \"infra\"\nurl = \"https://git.example.invalid/infra.git\"\n",
        state.display()
    );
    let probes = CASES
        .iter()
        .map(|&(name, layer, path, fields, ..)| (name, layer, path, fields))
        .chain(FINE.iter().copied());
    for (name, layer, path, fields) in probes {
        text.push_str(&format!(
            "\n[[probe]]\nname = \"{name}\"\nlayer = \"{layer}\"\npath = \"{path}\"\nschedule = \"\"\n{fields}\n"
        ));
    }
    text
}

/// `line:col` where the value at `key` (starting with `value`) is written
/// in probe `name`'s table of `text`.
fn position(text: &str, name: &str, key: &str, value: &str) -> String {
    let start = text
        .lines()
        .position(|l| l == format!("name = \"{name}\""))
        .unwrap();
    let base = key.split('[').next().unwrap();
    let (index, line) = text
        .lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| l.starts_with(&format!("{base} =")))
        .unwrap();
    let col = line.find(value).unwrap() + 1;
    format!("{}:{col}", index + 1)
}

fn validate(config: &Path, checkout: Option<&Path>) -> (Option<i32>, String) {
    let mut command = Command::new(common::driftwatch_bin());
    command.args(["validate", "--config"]).arg(config);
    if let Some(dir) = checkout {
        command.arg("--checkout").arg(dir);
    }
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_checks_every_path_a_probe_names_in_the_checkout() {
    if !crate::terraform::have_terraform() || !common::have_tool("ansible-playbook") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    work_tree(&work);
    let text = config_text(&tmp.path().join("state"));
    let config = tmp.path().join("driftwatch.toml");
    std::fs::write(&config, &text).unwrap();
    let file = config.display().to_string();

    let (code, stderr) = validate(&config, Some(&work));
    assert_eq!(code, Some(1), "{stderr}");
    for &(name, _, _, _, key, value, says, _) in CASES {
        let at = position(&text, name, key, value);
        let prefix = format!("{file}:{at}: probe.{name}.{key}: ");
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error starting {prefix:?}:\n{stderr}"));
        assert!(line.contains(says), "{name}: {line}");
    }
    for (name, ..) in FINE {
        assert!(
            !stderr.contains(&format!("probe.{name}.")),
            "{name}:\n{stderr}"
        );
    }
    // A kind filter selecting nothing is a warning: filters may be shared.
    let kinds = "warning: probe.k8s-kinds: include_kinds[1]: \"Ingres\" matches no kind the manifests declare";
    assert!(stderr.contains(kinds), "{stderr}");
    let errors = stderr.lines().filter(|l| l.starts_with(&file)).count();
    assert_eq!(errors, CASES.len(), "one error per case:\n{stderr}");

    // Without a work tree nothing fails; each path is named as not checked.
    let (code, stderr) = validate(&config, None);
    assert_eq!(code, Some(0), "{stderr}");
    for &(name, _, _, _, key, _, _, unchecked) in CASES {
        let Some(shown) = unchecked else {
            continue;
        };
        let warning = format!(
            "warning: probe.{name}.{key}: {shown:?} not checked: no work tree of repo \"infra\" at hand (pass --checkout DIR)"
        );
        assert!(stderr.contains(&warning), "{warning}\n{stderr}");
    }
}
