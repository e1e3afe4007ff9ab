//! Thin entry point: CLI → telemetry → config → app.

use std::process::ExitCode;

use clap::Parser;
use driftwatch::cli::{Cli, Command, LogFormat, ReportFormat};
use driftwatch::{app, config, report};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let code = runtime.block_on(dispatch(cli.command));
    // A git fetch hung in the network holds a blocking thread that cannot
    // be interrupted; dropping the runtime would wait for it forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Every run sweeps what it started; this catches whatever a run torn
    // down with the runtime could not, before the daemon is gone.
    driftwatch::process::sweep_all();
    code
}

fn init_tracing(cli: &Cli) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log_level));
    // Colour codes only where a person reads them: a log file or journald
    // gets plain text (NO_COLOR turns colour off on a terminal too).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    app::load_config(path).map_err(|errors| {
        for problem in &errors.problems {
            eprintln!("{problem}");
        }
        eprintln!("{} problem(s) in {}", errors.problems.len(), path.display());
        ExitCode::from(1)
    })
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Run {
            config,
            state_dir,
            listen,
        } => {
            let mut config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            if let Some(dir) = state_dir {
                config.state_dir = dir;
            }
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            let shutdown = CancellationToken::new();
            tokio::spawn(watch_signals(shutdown.clone()));
            match app::run(config, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("driftwatch: {err:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check {
            config,
            probes,
            format,
            state_dir,
        } => {
            let mut config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            if let Some(dir) = state_dir {
                config.state_dir = dir;
            }
            let shutdown = CancellationToken::new();
            tokio::spawn(watch_signals(shutdown.clone()));
            match app::check(config, &probes).await {
                Ok(reports) => {
                    let output = match format {
                        ReportFormat::Text => report::text(&reports),
                        ReportFormat::Json => report::json(&reports),
                    };
                    println!("{output}");
                    ExitCode::from(report::exit_code(&reports))
                }
                Err(err) => {
                    eprintln!("driftwatch: {err:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Ack(args) => match driftwatch::cli::ack_client::run(args).await {
            Ok(output) => {
                print!("{output}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("driftwatch ack: {message}");
                ExitCode::from(1)
            }
        },
        Command::Validate { config, checkout } => {
            let loaded = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let problems = app::validate(&loaded, checkout.as_deref()).await;
            for problem in &problems.errors {
                eprintln!("{problem}");
            }
            for warning in &problems.warnings {
                eprintln!("warning: {warning}");
            }
            if problems.errors.is_empty() {
                for line in &problems.schedules {
                    println!("{line}");
                }
                println!(
                    "{}: OK ({} repo(s), {} probe(s))",
                    config.display(),
                    loaded.repos.len(),
                    loaded.probes.len()
                );
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "{} problem(s) in {}",
                    problems.errors.len(),
                    config.display()
                );
                ExitCode::from(1)
            }
        }
    }
}

/// First SIGTERM/SIGINT drains the daemon; a second kills every child and exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler installs");
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!(
        "shutting down: no new runs; waiting for running probes (signal again to exit at once)"
    );
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: killing running probes and exiting now");
    driftwatch::process::kill_all();
    std::process::exit(130);
}
