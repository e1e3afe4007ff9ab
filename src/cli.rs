//! Command-line interface: `run`, `check`, `validate`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Tells you where running infrastructure has drifted from git"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "DRIFTWATCH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "DRIFTWATCH_LOG_LEVEL"
    )]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sync repos, run probes on schedule, serve /metrics and the API.
    Run {
        #[arg(long, short, env = "DRIFTWATCH_CONFIG")]
        config: PathBuf,
        /// Overrides state_dir from the config.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Overrides [server] listen from the config.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Sync once, run probes once, print a report. Exit 0 in sync, 2 drifted, 1 error.
    Check {
        #[arg(long, short, env = "DRIFTWATCH_CONFIG")]
        config: PathBuf,
        /// Run only this probe (repeatable). Default: all.
        #[arg(long = "probe", short = 'p')]
        probes: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Overrides state_dir from the config.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Check the config and every probe's environment; print all problems.
    Validate {
        #[arg(long, short, env = "DRIFTWATCH_CONFIG")]
        config: PathBuf,
        /// A local work tree of the configured remote repo(s): also read the
        /// probes' files there and warn about what they would do (e.g. Ansible
        /// tasks with check_mode: false). `path` repos are always read.
        #[arg(long)]
        checkout: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}
