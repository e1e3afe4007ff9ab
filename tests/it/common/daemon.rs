//! The daemon as a real process: start it from a config, poll its HTTP
//! endpoints, stop it with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::driftwatch_bin;

/// A running `driftwatch run` process; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        let text = std::fs::read_to_string(config).unwrap();
        let port: u16 = text
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|p| p.parse().ok())
            .expect("config names a listen port");
        let child = Command::new(driftwatch_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::blocking_get(&self.url(path))?;
        Some(response)
    }

    /// Polls until `check` returns true on a GET of `path`, or panics after a generous timeout.
    pub fn wait_for(&self, path: &str, what: &str, check: impl Fn(u16, &str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some((code, body)) = self.get(path) {
                if check(code, &body) {
                    return body;
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "timed out waiting for {what} at {path}; daemon log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POSTs with a bearer token.
    pub fn post(&self, path: &str, token: &str) -> Option<(u16, String)> {
        reqwest::request(
            "POST",
            &self.url(path),
            &format!("Authorization: Bearer {token}\r\n"),
        )
    }

    pub fn metric(&self, line_prefix: &str) -> Option<String> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find(|l| l.starts_with(line_prefix))
            .map(|l| l[line_prefix.len()..].trim().to_string())
    }

    /// Waits until the daemon's log holds `text`, or panics after a generous timeout.
    pub fn wait_for_log(&self, text: &str) {
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(text) {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("timed out waiting for {text:?} in the daemon log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("daemon did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal blocking HTTP GET over std, so tests need no async runtime here.
pub mod reqwest {
    use std::io::{Read, Write};

    pub fn blocking_get(url: &str) -> Option<(u16, String)> {
        request("GET", url, "")
    }

    /// A request with extra header lines (each ending in `\r\n`) and no body.
    pub fn request(method: &str, url: &str, headers: &str) -> Option<(u16, String)> {
        request_with_body(method, url, headers, "")
    }

    /// A request with extra header lines and a JSON body.
    pub fn request_with_body(
        method: &str,
        url: &str,
        headers: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream = std::net::TcpStream::connect(host).ok()?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nContent-Type: application/json\r\n{headers}Connection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Some((code, body))
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if size == 0 || rest.len() < size {
                break;
            }
            out.push_str(&rest[..size]);
            body = rest[size..].trim_start_matches("\r\n");
        }
        out
    }
}
