//! The generic command probe, prom-run's successor: run an argv in the
//! checkout and map its exit code to a verdict. With `output = "json"` the
//! command's stdout lists the changed resources (see probes/README.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{
    parse_fields, ErrorReason, FieldError, Outcome, Probe, ProbeCommon, ProbeContext, ProbeError,
    ResourceChange,
};

/// Cap on a plugin's stdout; more than this is a `parse` error, not a memory problem.
const JSON_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The argv to run; with `shell = true`, a single string for `sh -c`.
    pub command: Vec<String>,
    #[serde(default)]
    pub shell: bool,
    /// Working directory relative to the probe's path.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Variables passed through from driftwatch's environment, beyond PATH, HOME, LANG….
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Extra variables set for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "default_in_sync")]
    pub in_sync_exit_codes: Vec<i32>,
    #[serde(default = "default_drift")]
    pub drift_exit_codes: Vec<i32>,
    #[serde(default)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

fn default_in_sync() -> Vec<i32> {
    vec![0]
}

fn default_drift() -> Vec<i32> {
    vec![2]
}

pub struct CommandProbe {
    config: CommandConfig,
}

pub fn build(
    _common: &ProbeCommon,
    fields: toml::Table,
) -> Result<Arc<dyn Probe>, Vec<FieldError>> {
    let config: CommandConfig = parse_fields(fields)?;
    let mut errors = Vec::new();
    if config.command.is_empty() {
        errors.push(FieldError::new(
            "command",
            "must name a program to run, e.g. [\"./check.sh\"]",
        ));
    }
    if config.shell && config.command.len() != 1 {
        errors.push(FieldError::new(
            "command",
            "with shell = true, give one string for sh -c",
        ));
    }
    if let Some(dir) = &config.workdir {
        if crate::paths::escapes(dir) {
            errors.push(FieldError::new(
                "workdir",
                "must stay inside the repository (no absolute path or ..)",
            ));
        }
    }
    if let Some(code) = config
        .in_sync_exit_codes
        .iter()
        .find(|c| config.drift_exit_codes.contains(c))
    {
        errors.push(FieldError::new(
            "drift_exit_codes",
            format!("exit code {code} is also in in_sync_exit_codes"),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Arc::new(CommandProbe { config }))
}

#[async_trait::async_trait]
impl Probe for CommandProbe {
    fn layer(&self) -> &'static str {
        "command"
    }

    async fn run(&self, cx: &ProbeContext) -> Result<Outcome, ProbeError> {
        let c = &self.config;
        let mut command = if c.shell {
            cx.command("sh").arg("-c").arg(&c.command[0])
        } else {
            cx.command(&c.command[0]).args(&c.command[1..])
        };
        if let Some(dir) = &c.workdir {
            command = command.current_dir(cx.workdir.join(dir));
        }
        command = command.pass_env(c.pass_env.iter().cloned());
        for (key, value) in &c.env {
            command = command.env(key, value);
        }
        command = command
            .env("DRIFTWATCH_PROBE", &cx.name)
            .env("DRIFTWATCH_COMMIT", &cx.commit)
            .env("DRIFTWATCH_CHECKOUT", &cx.checkout);
        if c.output == OutputFormat::Json {
            command = command.stdout_limit(JSON_OUTPUT_LIMIT);
        }
        let output = cx.exec(command).await?;
        let code = output.code;
        let tail = output.stderr_tail(20);
        let drifted = match code {
            Some(code) if c.in_sync_exit_codes.contains(&code) => false,
            Some(code) if c.drift_exit_codes.contains(&code) => true,
            Some(code) => {
                return Err(ProbeError::new(
                    ErrorReason::ExitCode,
                    format!("command exited with code {code}"),
                )
                .with_exit_code(Some(code))
                .with_stderr_tail(tail))
            }
            None => {
                let signal = output.signal.unwrap_or_default();
                return Err(ProbeError::new(
                    ErrorReason::ExitCode,
                    format!("command was killed by signal {signal}"),
                )
                .with_stderr_tail(tail));
            }
        };
        let mut outcome = if c.output == OutputFormat::Json {
            if output.stdout_truncated {
                return Err(ProbeError::new(
                    ErrorReason::Parse,
                    format!("plugin printed more than {JSON_OUTPUT_LIMIT} bytes on stdout; output cut and ignored"),
                )
                .with_exit_code(code));
            }
            parse_plugin_output(&output.stdout, drifted).map_err(|e| e.with_exit_code(code))?
        } else {
            Outcome::default()
        };
        outcome.exit_code = code;
        outcome.drifted = drifted;
        if !drifted {
            outcome.changes.clear();
        }
        Ok(outcome)
    }
}

/// The plugin protocol's stdout document; see probes/README.md.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginOutput {
    #[serde(default)]
    resources: Vec<PluginResource>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    details: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginResource {
    subject: String,
    #[serde(default = "default_action")]
    action: String,
    #[serde(default)]
    diff: String,
    #[serde(default)]
    origin: Option<String>,
}

fn default_action() -> String {
    "changed".to_string()
}

fn parse_plugin_output(stdout: &[u8], drifted: bool) -> Result<Outcome, ProbeError> {
    if stdout.iter().all(u8::is_ascii_whitespace) && !drifted {
        return Ok(Outcome::default());
    }
    let doc: PluginOutput = serde_json::from_slice(stdout).map_err(|e| {
        ProbeError::new(
            ErrorReason::Parse,
            format!("plugin output is not valid protocol JSON: {e}"),
        )
    })?;
    let changes = doc
        .resources
        .into_iter()
        .map(|r| {
            let change = ResourceChange::new(r.subject, r.action).with_diff(r.diff);
            match r.origin {
                Some(origin) => change.with_origin(origin),
                None => change,
            }
        })
        .collect();
    Ok(Outcome {
        changes,
        warnings: doc.warnings,
        details: doc.details,
        ..Outcome::default()
    })
}
