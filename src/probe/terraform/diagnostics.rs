//! Terraform's error diagnostics, read from `-no-color` stderr, turned into
//! short `file:line: summary` lines for the error message.

/// One `Error: …` block: its summary and, when given, where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub summary: String,
    /// `main.tf:12` when the diagnostic names a source location.
    pub location: Option<String>,
}

impl Diagnostic {
    pub fn render(&self) -> String {
        match &self.location {
            Some(location) => format!("{location}: {}", self.summary),
            None => self.summary.clone(),
        }
    }
}

/// The distinct errors in `stderr`, in order. Terraform can repeat the same
/// diagnostic (init prints config errors twice); duplicates are dropped.
pub fn errors(stderr: &str) -> Vec<Diagnostic> {
    let mut found: Vec<Diagnostic> = Vec::new();
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim_start_matches(['│', '╷', '╵']).trim_end())
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(summary) = line.trim_start().strip_prefix("Error: ") else {
            continue;
        };
        let mut location = None;
        // The location line follows within a few lines: `  on main.tf line 12, in resource …:`
        for next in lines.iter().skip(i + 1).take(4) {
            let next = next.trim_start();
            if next.starts_with("Error: ") {
                break;
            }
            if let Some(rest) = next.strip_prefix("on ") {
                if let Some((file, after)) = rest.split_once(" line ") {
                    let number: String = after.chars().take_while(char::is_ascii_digit).collect();
                    if !number.is_empty() {
                        location = Some(format!("{file}:{number}"));
                    }
                }
                break;
            }
        }
        if location.is_none() {
            // Some diagnostics only name the spot in their prose: "… at main.tf:1."
            let body = lines
                .iter()
                .skip(i + 1)
                .take_while(|l| !l.trim_start().starts_with("Error: "))
                .take(12);
            location = body.filter_map(|l| prose_location(l)).next();
        }
        let diagnostic = Diagnostic {
            summary: summary.trim().to_string(),
            location,
        };
        if !found.contains(&diagnostic) {
            found.push(diagnostic);
        }
    }
    found
}

fn prose_location(line: &str) -> Option<String> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(r"([\w./-]+\.(?:tf|tf\.json|tofu|tfvars)):(\d+)").expect("valid regex")
    });
    let found = pattern.captures(line)?;
    Some(format!("{}:{}", &found[1], &found[2]))
}

/// True when Terraform says the working directory needs `init` (a module,
/// provider or backend it did not expect): the probe then re-runs init once.
pub fn needs_init(stderr: &str) -> bool {
    const HINTS: &[&str] = &[
        "terraform init",
        "tofu init",
        "Module not installed",
        "Backend initialization required",
        "Required plugins are not installed",
        "Inconsistent dependency lock file",
        "Missing required provider",
        "Module source has changed",
        "Module version requirements have changed",
        "provider registry.terraform.io",
    ];
    errors(stderr)
        .iter()
        .any(|d| HINTS.iter().any(|h| d.summary.contains(h)))
        || HINTS[..2]
            .iter()
            .any(|h| stderr.contains(&format!("\"{h}\"")) || stderr.contains(&format!("`{h}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT_SYNTAX_ERROR: &str = "
Error: Unsupported block type

  on main.tf line 16:
  16: foo {

Blocks of type \"foo\" are not expected here.

Error: Terraform encountered problems during initialisation, including problems
with the configuration, described below.

Error: Unsupported block type

  on main.tf line 16:
  16: foo {
";

    #[test]
    fn names_file_and_line_once() {
        let found = errors(INIT_SYNTAX_ERROR);
        let rendered: Vec<String> = found.iter().map(Diagnostic::render).collect();
        assert_eq!(
            rendered,
            [
                "main.tf:16: Unsupported block type",
                "Terraform encountered problems during initialisation, including problems"
            ]
        );
    }

    #[test]
    fn boxed_diagnostics_from_color_mode_parse_too() {
        let text = "╷\n│ Error: Reference to undeclared resource\n│ \n│   on network/vpc.tf line 3, in resource \"x\" \"y\":\n│    3:   a = b.c\n╵\n";
        assert_eq!(
            errors(text)[0].render(),
            "network/vpc.tf:3: Reference to undeclared resource"
        );
    }

    #[test]
    fn locations_in_prose_are_found() {
        let text = "Error: Unreadable module directory\n\nUnable to evaluate directory symlink\n\nError: Unreadable module directory\n\nThe directory  could not be read for module \"net\" at main.tf:1.\n";
        let rendered: Vec<String> = errors(text).iter().map(Diagnostic::render).collect();
        assert_eq!(
            rendered,
            [
                "Unreadable module directory",
                "main.tf:1: Unreadable module directory"
            ]
        );
    }

    #[test]
    fn init_hints() {
        assert!(needs_init(
            "Error: Module not installed\n\n  on main.tf line 1:\n"
        ));
        assert!(needs_init(
            "Error: Inconsistent dependency lock file\n\nThe following dependency selections recorded in the lock file are inconsistent"
        ));
        assert!(!needs_init(INIT_SYNTAX_ERROR));
    }
}
