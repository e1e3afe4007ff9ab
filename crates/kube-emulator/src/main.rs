//! `kube-emulator [--seed FILE.yaml]...`: serves the in-repo Kubernetes API
//! stand-in on 127.0.0.1 (a free port), writes a kubeconfig for it and prints
//! `kubeconfig: PATH` and `url: URL`, then runs until Ctrl-C. Used by
//! `scripts/demo` when no real cluster is given. It is not a cluster: it
//! serves the API shapes driftwatch and kubectl read, nothing schedules pods.

use std::path::PathBuf;

#[tokio::main]
async fn main() {
    let mut seeds = Vec::new();
    let mut dir = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => seeds.push(PathBuf::from(args.next().expect("--seed FILE"))),
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            other => {
                eprintln!("kube-emulator: unknown argument {other:?}; usage: kube-emulator [--dir DIR] [--seed FILE.yaml]...");
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
    let _ = tokio::signal::ctrl_c().await;
}
