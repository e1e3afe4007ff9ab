//! Command-line interface: `run`, `check`, `validate`, `ack` (its client
//! against a running daemon is [`ack_client`]).

pub mod ack_client;

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
        /// Overrides state_dir from the config (a relative path is relative to the current directory).
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
        /// Overrides state_dir from the config (a relative path is relative to the current directory).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Acknowledge a known drift on a running daemon (or list or end acks).
    /// Exit 0 when done, 1 when the daemon refused or could not be reached.
    Ack(AckArgs),
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

/// `driftwatch ack <instance> --by X --reason Y --expires 4h`.
#[derive(Debug, Clone, clap::Args)]
pub struct AckArgs {
    /// The probe instance: its name, or `name:root`.
    #[arg(required_unless_present_any = ["list", "delete"])]
    pub instance: Option<String>,
    /// Who acknowledges the drift.
    #[arg(long, required_unless_present_any = ["list", "delete"])]
    pub by: Option<String>,
    /// Why the drift is accepted (an incident, a ticket).
    #[arg(long, required_unless_present_any = ["list", "delete"])]
    pub reason: Option<String>,
    /// When it expires: a duration (`4h`, `7d`) or an RFC 3339 time.
    #[arg(long, required_unless_present_any = ["list", "delete"])]
    pub expires: Option<String>,
    /// Only this drifted resource (repeatable). Default: all of the instance's drift.
    #[arg(long = "subject")]
    pub subjects: Vec<String>,
    /// Only this drifted field of those resources (repeatable).
    #[arg(long = "field")]
    pub fields: Vec<String>,
    /// The daemon's base URL.
    #[arg(long, env = "DRIFTWATCH_URL", default_value = "http://127.0.0.1:9808")]
    pub url: String,
    /// A file holding the bearer token (`[server] api_token_file` to write;
    /// the read token, when the read API is protected, for `--list`).
    #[arg(long, env = "DRIFTWATCH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the `.driftwatch/acks.toml` entry (with its fingerprints) instead of creating the ack.
    #[arg(long, conflicts_with_all = ["list", "delete"])]
    pub print: bool,
    /// List every acknowledgement the daemon holds.
    #[arg(long, conflicts_with = "delete")]
    pub list: bool,
    /// End this acknowledgement early.
    #[arg(long, value_name = "ID")]
    pub delete: Option<String>,
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
