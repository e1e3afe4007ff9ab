//! Benchmark for the Terraform layer. Run by `scripts/bench-terraform`; prints
//! figures, asserts nothing.
//!
//! 1. Overhead over a bare `terraform plan` on the same warm root, measured
//!    side by side (interleaved iterations, medians): in sync (driftwatch runs
//!    exactly `plan`), and drifted (driftwatch adds `show -json`).
//! 2. 20 roots at parallelism 1 against parallelism 4 (a semaphore, as the
//!    scheduler uses), wall time.
//! 3. Time in `init`: first run against a second run on the same commit, with
//!    `terraform_data` and, when installed, Terraform 1.0.3 + the null provider.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch::probe::{Probe, ProbeCommon, ProbeContext};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    tmp: tempfile::TempDir,
    binary: String,
    cli_config: PathBuf,
}

impl Bench {
    fn terraform(&self, dir: &Path, data_dir: &Path, args: &[&str]) -> std::process::ExitStatus {
        Command::new(&self.binary)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_DATA_DIR", data_dir)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("terraform runs")
    }

    /// A root with `resources` terraform_data resources (or null_resources), applied.
    fn root(&self, name: &str, resources: usize, null_provider: bool) -> PathBuf {
        let dir = self.tmp.path().join("repo").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let state = self
            .tmp
            .path()
            .join("state")
            .join(format!("{name}.tfstate"));
        let mut text = format!(
            "terraform {{\n  backend \"local\" {{\n    path = {:?}\n  }}\n}}\n",
            state.to_str().unwrap()
        );
        for i in 0..resources {
            if null_provider {
                text += &format!(
                    "resource \"null_resource\" \"r{i}\" {{\n  triggers = {{ v = \"{i}\" }}\n}}\n"
                );
            } else {
                text += &format!("resource \"terraform_data\" \"r{i}\" {{\n  input = {{ index = {i}, name = \"r{i}\" }}\n}}\n");
            }
        }
        std::fs::write(dir.join("main.tf"), text).unwrap();
        let data = self.tmp.path().join("setup").join(name);
        assert!(self
            .terraform(&dir, &data, &["init", "-input=false"])
            .success());
        assert!(self
            .terraform(&dir, &data, &["apply", "-auto-approve", "-input=false"])
            .success());
        let _ = std::fs::remove_file(dir.join(".terraform.lock.hcl"));
        dir
    }

    fn probe(&self, extra: &str) -> Arc<dyn Probe> {
        let common = ProbeCommon {
            name: "bench".into(),
            layer: "terraform".into(),
            repo: "bench".into(),
            path: PathBuf::from("repo"),
            config_dir: self.tmp.path().to_path_buf(),
            labels: Default::default(),
            ..Default::default()
        };
        let fields = format!(
            "binary = {:?}\ncli_config_file = {:?}\n{extra}",
            self.binary,
            self.cli_config.to_str().unwrap()
        );
        let build = driftwatch::probe::builder("terraform").unwrap();
        build(&common, toml::from_str(&fields).unwrap()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn context(&self, root: &str, cache: &str) -> ProbeContext {
        let checkout = self.tmp.path().to_path_buf();
        let cache_dir = self.tmp.path().join("cache").join(cache);
        let scratch_dir = self.tmp.path().join("scratch").join(root).join(cache);
        std::fs::create_dir_all(&cache_dir).unwrap();
        std::fs::create_dir_all(&scratch_dir).unwrap();
        ProbeContext {
            name: "bench".into(),
            root: root.into(),
            workdir: checkout.join("repo").join(root),
            checkout,
            commit: String::new(),
            cancel: tokio_util::sync::CancellationToken::new(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(600),
            cache_dir,
            scratch_dir,
            kill_grace: Duration::from_secs(5),
            fingerprint_key: Default::default(),
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn new_bench(binary: &str, cli_config: Option<PathBuf>) -> Bench {
    let tmp = tempfile::tempdir().unwrap();
    let cli_config = cli_config.unwrap_or_else(|| {
        let path = tmp.path().join("empty.tfrc");
        std::fs::write(&path, "").unwrap();
        path
    });
    Bench {
        tmp,
        binary: binary.into(),
        cli_config,
    }
}

async fn overhead(iterations: usize, resources: usize) {
    let bench = new_bench("terraform", None);
    let root = bench.root("warm", resources, false);
    let probe = bench.probe("");
    let bare_data = bench.tmp.path().join("bare-data");
    assert!(bench
        .terraform(&root, &bare_data, &["init", "-input=false"])
        .success());
    let plan_file = bench.tmp.path().join("bare.tfplan");
    let plan_arg = format!("-out={}", plan_file.display());
    let bare_plan = [
        "plan",
        "-detailed-exitcode",
        "-input=false",
        "-lock=false",
        "-no-color",
        plan_arg.as_str(),
    ];
    // Warm both sides once.
    let _ = probe.run(&bench.context("warm", "warm")).await;
    let _ = bench.terraform(&root, &bare_data, &bare_plan);

    for case in ["in sync", "drifted"] {
        if case == "drifted" {
            let text = std::fs::read_to_string(root.join("main.tf")).unwrap();
            std::fs::write(
                root.join("main.tf"),
                text.replace("index = 0,", "index = 1000,"),
            )
            .unwrap();
        }
        let (mut bare, mut bare_show, mut ours) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..iterations {
            let t = Instant::now();
            let status = bench.terraform(&root, &bare_data, &bare_plan);
            bare.push(t.elapsed());
            if status.code() == Some(2) {
                let t2 = Instant::now();
                bench.terraform(
                    &root,
                    &bare_data,
                    &["show", "-json", plan_file.to_str().unwrap()],
                );
                bare_show.push(t.elapsed());
                let _ = t2;
            } else {
                bare_show.push(t.elapsed());
            }
            let t = Instant::now();
            let outcome = probe
                .run(&bench.context("warm", "warm"))
                .await
                .expect("probe runs");
            ours.push(t.elapsed());
            assert_eq!(outcome.details["init"], "skipped");
        }
        let (bare, bare_show, ours) = (median(bare), median(bare_show), median(ours));
        println!(
            "overhead, {case} ({resources} resources, {iterations} runs, medians): bare plan {} | bare plan+show {} | driftwatch {} | ratio vs bare plan {:.3} | vs plan+show {:.3}",
            ms(bare),
            ms(bare_show),
            ms(ours),
            ours.as_secs_f64() / bare.as_secs_f64(),
            ours.as_secs_f64() / bare_show.as_secs_f64(),
        );
    }
}

async fn roots_parallelism(roots: usize) {
    let bench = new_bench("terraform", None);
    let names: Vec<String> = (0..roots).map(|i| format!("stack{i:02}")).collect();
    for name in &names {
        bench.root(name, 5, false);
    }
    let bench = Arc::new(bench);
    for parallelism in [1usize, 4] {
        let probe = bench.probe(&format!(
            "roots = [\"stack*\"]\nparallelism = {parallelism}"
        ));
        let listed = probe.roots(&bench.tmp.path().join("repo")).unwrap().roots;
        assert_eq!(listed.len(), roots);
        for warm in [true, false] {
            let cache = format!("p{parallelism}");
            let semaphore = Arc::new(tokio::sync::Semaphore::new(probe.parallelism()));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for root in &listed {
                let (probe, bench, semaphore, root, cache) = (
                    probe.clone(),
                    bench.clone(),
                    semaphore.clone(),
                    root.clone(),
                    cache.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let _permit = semaphore.acquire_owned().await.unwrap();
                    probe
                        .run(&bench.context(&root, &cache))
                        .await
                        .expect("probe runs");
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            if !warm {
                println!(
                    "{roots} roots, parallelism {parallelism}: wall time {} (warm cache, init skipped)",
                    ms(started.elapsed())
                );
            } else {
                println!(
                    "{roots} roots, parallelism {parallelism}: wall time {} (first run, with init)",
                    ms(started.elapsed())
                );
            }
        }
    }
}

async fn init_time(binary: &str, cli_config: Option<PathBuf>, null_provider: bool) {
    let bench = new_bench(binary, cli_config);
    bench.root("app", 5, null_provider);
    let probe = bench.probe("");
    let first = probe
        .run(&bench.context("app", "init"))
        .await
        .expect("probe runs");
    let second = probe
        .run(&bench.context("app", "init"))
        .await
        .expect("probe runs");
    println!(
        "init with {} ({}): first run init {} s ({}), second run on the same commit init {} s ({})",
        binary,
        if null_provider {
            "null provider from mirror"
        } else {
            "terraform_data only"
        },
        first.details["init_seconds"],
        first.details["init"].as_str().unwrap_or(""),
        second.details["init_seconds"],
        second.details["init"].as_str().unwrap_or(""),
    );
}

#[tokio::main]
async fn main() {
    let iterations = env_usize("BENCH_ITERATIONS", 10);
    let roots = env_usize("BENCH_ROOTS", 20);
    let resources = env_usize("BENCH_RESOURCES", 20);
    println!(
        "terraform: {}",
        String::from_utf8_lossy(
            &Command::new("terraform")
                .arg("version")
                .output()
                .unwrap()
                .stdout
        )
        .lines()
        .next()
        .unwrap_or("?")
    );
    overhead(iterations, resources).await;
    roots_parallelism(roots).await;
    init_time("terraform", None, false).await;
    let old = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("terraform-1.0.3"))
        .find(|p| p.is_file());
    if let Some(old) = old {
        let rc = old
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("terraform-offline.tfrc"));
        init_time(old.to_str().unwrap(), rc, true).await;
    } else {
        println!("terraform-1.0.3 not installed (scripts/install-tools): skipping the null-provider init figure");
    }
}
