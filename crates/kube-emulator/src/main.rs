//! `kube-emulator [--seed FILE.yaml]... [--stats FILE]`: serves the in-repo
//! Kubernetes API stand-in on 127.0.0.1 (a free port), writes a kubeconfig
//! for it and prints `kubeconfig: PATH` and `url: URL`, then runs until
//! Ctrl-C. With `--stats`, rewrites FILE every second with the requests
//! served so far as JSON (`requests`, `writes`, and requests per resource
//! type), for benchmarks such as `scripts/bench-cluster`. Used by
//! `scripts/demo` when no real cluster is given. It is not a cluster: it
//! serves the API shapes driftwatch and kubectl read, nothing schedules pods.

use std::path::PathBuf;

#[tokio::main]
async fn main() {
    let mut seeds = Vec::new();
    let mut stats: Option<PathBuf> = None;
    let mut dir = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => seeds.push(PathBuf::from(args.next().expect("--seed FILE"))),
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            "--stats" => stats = Some(PathBuf::from(args.next().expect("--stats FILE"))),
            other => {
                eprintln!("kube-emulator: unknown argument {other:?}; usage: kube-emulator [--dir DIR] [--seed FILE.yaml]... [--stats FILE]");
                std::process::exit(2);
            }
        }
    }
    let emulator = kube_emulator::KubeEmulator::start().await;
    for seed in &seeds {
        let yaml = std::fs::read_to_string(seed)
            .unwrap_or_else(|e| panic!("cannot read seed {}: {e}", seed.display()));
        emulator.apply(&yaml);
    }
    std::fs::create_dir_all(&dir).expect("create --dir");
    let kubeconfig = emulator.write_kubeconfig(&dir);
    println!("kubeconfig: {}", kubeconfig.display());
    println!("url: {}", emulator.url());
    if let Some(file) = stats {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            let mut by_resource = std::collections::BTreeMap::<String, u64>::new();
            for path in emulator.paths() {
                let path = path.split('?').next().unwrap_or("");
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                // …/namespaces/NS/PLURAL[/NAME] or …/PLURAL[/NAME]
                let plural = match segments.iter().position(|s| *s == "namespaces") {
                    Some(i) if segments.len() > i + 2 => segments[i + 2],
                    _ => segments.get(2).copied().unwrap_or("discovery"),
                };
                *by_resource.entry(plural.to_string()).or_default() += 1;
            }
            let text = serde_json::json!({
                "requests": emulator.requests(),
                "writes": emulator.writes(),
                "by_resource": by_resource,
            });
            let tmp = file.with_extension("tmp");
            if std::fs::write(&tmp, text.to_string()).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
