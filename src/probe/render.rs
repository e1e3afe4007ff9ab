//! The paths a Kubernetes `render` argv names in the checkout, for
//! `validate`: read from the argv as the tool would, and only where that
//! reading is unambiguous, so a word that may be a flag's value or a chart
//! in a Helm repository is never reported as a missing file.

use std::path::Path;

use super::repo_path::{PathKind, RepoPath};

/// The paths a render argv (run in the probe's path) names in the
/// checkout: a program run from it, the kustomization directory of
/// `kubectl kustomize DIR` or `kustomize build DIR`, and the chart, values
/// files, `--set-file` files and post-renderer of `helm template`.
pub fn render_paths(render: &[String], probe_dir: Option<&Path>) -> Vec<RepoPath> {
    let here = Path::new("");
    let mut paths = Vec::new();
    let Some(program) = render.first() else {
        return paths;
    };
    if program.contains('/') && Path::new(program).is_relative() {
        paths.push(RepoPath::new(
            "render[0]",
            probe_dir,
            here,
            program,
            PathKind::Program,
        ));
    }
    let name = Path::new(program).file_name().and_then(|n| n.to_str());
    let subcommand = render.get(1).map(String::as_str);
    if matches!(
        (name, subcommand),
        (Some("kubectl"), Some("kustomize")) | (Some("kustomize"), Some("build"))
    ) {
        // Only an unambiguous one: with flag values among the arguments
        // (`--load-restrictor X dir`) which word is the directory is a guess.
        let operands: Vec<(usize, &String)> = render
            .iter()
            .enumerate()
            .skip(2)
            .filter(|(_, arg)| !arg.starts_with('-'))
            .collect();
        if let [(index, dir)] = operands[..] {
            if Path::new(dir).is_relative() && !dir.contains("://") {
                let key = format!("render[{index}]");
                paths.push(RepoPath::new(
                    key,
                    probe_dir,
                    here,
                    dir,
                    PathKind::Directory,
                ));
            }
        }
    }
    if name == Some("helm") {
        paths.extend(helm_template_paths(render, probe_dir));
    }
    paths
}

/// `helm template` (and global) flags that take a value as the next word
/// unless written `--flag=value`, from `helm template --help` (Helm 3);
/// the switches are in `BOOLEAN_FLAGS`.
const VALUE_FLAGS: &str =
    "-a --api-versions --burst-limit --ca-file --cert-file --description -f --values \
    --kube-apiserver --kube-as-group --kube-as-user --kube-ca-file --kube-context \
    --kube-tls-server-name --kube-token --kube-version --kubeconfig --key-file --keyring -l \
    --labels -n --namespace --name-template --output-dir --password --post-renderer \
    --post-renderer-args --qps --registry-config --repo --repository-cache \
    --repository-config --set --set-file --set-json --set-literal --set-string -s \
    --show-only --timeout --username --version";

/// `helm template` switches: they never take the next word (`--dry-run`
/// takes a value only as `--dry-run=server`).
const BOOLEAN_FLAGS: &str = "--atomic --create-namespace --debug --dependency-update --devel \
    --disable-openapi-validation --dry-run --enable-dns --force -g --generate-name \
    --hide-notes --include-crds --insecure-skip-tls-verify --is-upgrade \
    --kube-insecure-skip-tls-verify --no-hooks --pass-credentials --plain-http \
    --release-name --replace --skip-crds --skip-schema-validation --skip-tests \
    --take-ownership --validate --verify --wait --wait-for-jobs";

/// What `helm [flags] template [NAME] CHART [flags]` reads from the
/// checkout. The chart is the last operand; it is a path when helm can
/// only read it as one: written `./…`, `../…` or without a `/` (helm
/// refuses a bare name that is not a local chart), or `dir/…` where `dir`
/// is a directory of the checkout. `repo/chart` and `oci://…` come from a
/// repository, and with `--repo` the chart is a name in it: not checked.
fn helm_template_paths(render: &[String], probe_dir: Option<&Path>) -> Vec<RepoPath> {
    let here = Path::new("");
    let mut paths = Vec::new();
    let mut operands: Vec<(usize, &str)> = Vec::new();
    // A flag helm may take a value for that is not in the tables: which
    // words are operands is then a guess, so the chart is left alone.
    let mut unsure = false;
    let mut from_repository = false;
    let mut index = 1;
    while index < render.len() {
        let arg = render[index].as_str();
        let at = index;
        index += 1;
        if arg == "--" {
            operands.extend(
                render[index..]
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (index + i, a.as_str())),
            );
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            operands.push((at, arg));
            continue;
        }
        let (flag, attached) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            // `-fvalues.yaml`: a short flag with its value attached.
            None if !arg.starts_with("--") && arg.len() > 2 => (&arg[..2], Some(&arg[2..])),
            None => (arg, None),
        };
        let known = |table: &str| table.split_whitespace().any(|known| known == flag);
        if known(BOOLEAN_FLAGS) {
            continue;
        }
        if !known(VALUE_FLAGS) {
            unsure |= attached.is_none();
            continue;
        }
        let (value, value_at) = match attached {
            Some(value) => (value, at),
            None if index < render.len() => {
                index += 1;
                (render[index - 1].as_str(), index - 1)
            }
            None => continue,
        };
        let key = format!("render[{value_at}]");
        let in_checkout = |file: &str| {
            !file.is_empty()
                && file != "-"
                && !file.contains("://")
                && Path::new(file).is_relative()
        };
        match flag {
            "--repo" => from_repository = true,
            // A list: `-f a.yaml,b.yaml` is two files.
            "-f" | "--values" => {
                for file in value.split(',').filter(|file| in_checkout(file)) {
                    paths.push(RepoPath::new(&key, probe_dir, here, file, PathKind::File));
                }
            }
            // `name=path[,name=path]`; a `\,` in a value is helm's escape, not a split.
            "--set-file" if !value.contains('\\') => {
                let files = value
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(_, file)| file);
                for file in files.filter(|file| in_checkout(file)) {
                    paths.push(RepoPath::new(&key, probe_dir, here, file, PathKind::File));
                }
            }
            // Looked up on PATH unless it names a path.
            "--post-renderer" if value.contains('/') && in_checkout(value) => {
                paths.push(RepoPath::new(
                    &key,
                    probe_dir,
                    here,
                    value,
                    PathKind::Program,
                ));
            }
            _ => {}
        }
    }
    // `template` first, then [NAME] CHART.
    let Some(((_, "template"), rest)) = operands.split_first() else {
        return paths;
    };
    let chart = match rest {
        [chart] | [_, chart] => *chart,
        _ => return paths,
    };
    let (chart_at, chart) = chart;
    if unsure || from_repository || chart.contains("://") || Path::new(chart).is_absolute() {
        return paths;
    }
    let local = chart.starts_with('.')
        || !chart.contains('/')
        || match (probe_dir, chart.split('/').next()) {
            (Some(dir), Some(first)) => dir.join(first).is_dir(),
            _ => false,
        };
    if local {
        let key = format!("render[{chart_at}]");
        paths.push(RepoPath::new(key, probe_dir, here, chart, PathKind::Chart));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named path: (key, path shown, kind).
    type Named = (String, String, PathKind);

    /// The (key, path shown, kind) a render argv names, in a checkout
    /// holding `charts/` (so `charts/app` is a local path) but no `bitnami/`.
    fn named(argv: &str, checkout: bool) -> Vec<Named> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("charts/app")).unwrap();
        let render: Vec<String> = argv.split(' ').map(String::from).collect();
        render_paths(&render, checkout.then_some(dir.path()))
            .into_iter()
            .map(|p| (p.key, p.shown, p.kind))
            .collect()
    }

    fn path(key: &str, shown: &str, kind: PathKind) -> Named {
        (key.to_string(), shown.to_string(), kind)
    }

    #[test]
    fn helm_template_names_its_chart_values_files_and_post_renderer() {
        use PathKind::{Chart, File, Program};
        let cases: &[(&str, Vec<Named>)] = &[
            // The example: a chart in the repo.
            ("helm template web ./chart", vec![path("render[3]", "chart", Chart)]),
            ("helm template ./chart", vec![path("render[2]", "chart", Chart)]),
            ("helm template web chart", vec![path("render[3]", "chart", Chart)]),
            ("helm template web ../shared/chart", vec![path("render[3]", "../shared/chart", Chart)]),
            ("helm template web charts/app", vec![path("render[3]", "charts/app", Chart)]),
            ("/usr/local/bin/helm template web ./chart", vec![path("render[3]", "chart", Chart)]),
            (
                "helm template web ./chart -f values/prod.yaml --values=values/eu.yaml,values/x.yaml",
                vec![
                    path("render[5]", "values/prod.yaml", File),
                    path("render[6]", "values/eu.yaml", File),
                    path("render[6]", "values/x.yaml", File),
                    path("render[3]", "chart", Chart),
                ],
            ),
            ("helm template web ./chart -fprod.yaml", vec![path("render[4]", "prod.yaml", File), path("render[3]", "chart", Chart)]),
            // Flags before the operands, with and without values.
            (
                "helm -n prod template --include-crds --namespace prod web ./chart --version 1.2.3",
                vec![path("render[8]", "chart", Chart)],
            ),
            (
                "helm template web ./chart --set-file config=files/app.conf,b=/etc/b --post-renderer ./hooks/post.sh",
                vec![path("render[5]", "files/app.conf", File), path("render[7]", "hooks/post.sh", Program),
                    path("render[3]", "chart", Chart),
],
            ),
            ("helm template web ./chart -- --odd", vec![]),
            // From a repository, a URL or the host: nothing in the checkout.
            ("helm template web bitnami/nginx", vec![]),
            ("helm template web nginx --repo https://charts.example.com", vec![]),
            ("helm template web oci://registry.example.com/charts/web", vec![]),
            ("helm template web /opt/charts/web -f https://example.com/v.yaml -f - -f /etc/v.yaml", vec![]),
            ("helm template web ./chart --post-renderer kustomize", vec![path("render[3]", "chart", Chart)]),
            // A flag not in the tables: its value could be the chart.
            ("helm template web --future-flag ./chart -f v.yaml", vec![path("render[6]", "v.yaml", File)]),
            ("helm template a b c", vec![]),
            ("helm lint ./chart", vec![]),
            ("helm version", vec![]),
        ];
        for (argv, want) in cases {
            assert_eq!(&named(argv, true), want, "{argv}");
        }
        // Without a checkout `dir/…` may be a repository's chart: not named.
        assert_eq!(named("helm template web charts/app", false), []);
        assert_eq!(
            named("helm template web ./chart", false),
            [path("render[3]", "chart", Chart)]
        );
    }

    #[test]
    fn a_chart_is_a_directory_with_chart_yaml_or_a_packaged_file() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["good/Chart.yaml", "bare/values.yaml", "web-1.0.0.tgz"] {
            let file = dir.path().join(file);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, "").unwrap();
        }
        let problem = |chart: &str| {
            RepoPath::new(
                "render[3]",
                Some(dir.path()),
                Path::new(""),
                chart,
                PathKind::Chart,
            )
            .problem(Path::new("k8s"))
        };
        assert_eq!(problem("good"), None);
        assert_eq!(problem("web-1.0.0.tgz"), None);
        let bare = problem("bare").unwrap();
        assert!(
            bare.starts_with("\"k8s/bare\" holds no Chart.yaml"),
            "{bare}"
        );
        assert_eq!(
            problem("gone").unwrap(),
            "\"k8s/gone\" does not exist in the checkout"
        );
    }
}
