//! `driftwatch ack`: the command line against a running daemon's API. It
//! creates (`POST /api/v1/probes/{id}/acks`), previews as an acks-file entry
//! (`--print`, `?dry_run=true`), lists (`GET /api/v1/acks`) and ends
//! (`DELETE /api/v1/acks/{id}`) acknowledgements. In `kubernetes` mode a
//! replica that does not own the instance answers 421 with the owner's URL,
//! which is asked once instead.

use std::fmt::Write;

use serde_json::{json, Value};

use super::AckArgs;
use crate::ack::{AckState, AckView};

/// Runs the command; `Err` is the message for stderr (exit 1).
pub async fn run(args: AckArgs) -> Result<String, String> {
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let base = args.url.trim_end_matches('/').to_string();
    if args.list {
        let body = send(
            &client,
            reqwest::Method::GET,
            &base,
            "/api/v1/acks",
            token.as_deref(),
            None,
        )
        .await?;
        let acks: Vec<AckView> = serde_json::from_value(body["acks"].clone())
            .map_err(|e| format!("unexpected answer from {base}: {e}"))?;
        return Ok(list(&acks));
    }
    if let Some(id) = &args.delete {
        let path = format!("/api/v1/acks/{}", encode(id));
        send(
            &client,
            reqwest::Method::DELETE,
            &base,
            &path,
            token.as_deref(),
            None,
        )
        .await?;
        return Ok(format!("ended {id}\n"));
    }
    let instance = args.instance.clone().unwrap_or_default();
    let body = json!({
        "by": args.by.clone().unwrap_or_default(),
        "reason": args.reason.clone().unwrap_or_default(),
        "expires": args.expires.clone().unwrap_or_default(),
        "subjects": args.subjects,
        "fields": args.fields,
    });
    let mut path = format!("/api/v1/probes/{}/acks", encode(&instance));
    if args.print {
        path.push_str("?dry_run=true");
    }
    let answer = send(
        &client,
        reqwest::Method::POST,
        &base,
        &path,
        token.as_deref(),
        Some(body),
    )
    .await?;
    if args.print {
        return Ok(answer["snippet"].as_str().unwrap_or_default().to_string());
    }
    let ack: AckView = serde_json::from_value(answer)
        .map_err(|e| format!("unexpected answer from {base}: {e}"))?;
    Ok(format!(
        "acknowledged {}\n{}",
        ack.instance,
        list(std::slice::from_ref(&ack))
    ))
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Sends one request and returns the JSON answer; follows one 421 to the owner.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut base = base.to_string();
    for _ in 0..2 {
        let mut request = client.request(method.clone(), format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach the daemon at {base}: {e}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        if status == reqwest::StatusCode::MISDIRECTED_REQUEST {
            if let Some(owner) = answer["owner_url"].as_str() {
                base = owner.trim_end_matches('/').to_string();
                continue;
            }
        }
        let message = answer["error"].as_str().unwrap_or("no message");
        return Err(format!("{base} answered {status}: {message}"));
    }
    Err("the instance's owner sent the request elsewhere again".into())
}

/// One block per ack: id, state, who, until, why, what.
pub fn list(acks: &[AckView]) -> String {
    let mut out = String::new();
    if acks.is_empty() {
        out.push_str("no acknowledgements\n");
    }
    for ack in acks {
        let _ = writeln!(
            out,
            "{} {} [{}, {}] by {} until {}: {}",
            ack.id,
            ack.instance,
            ack.state.as_str(),
            ack.source.as_str(),
            ack.by,
            ack.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ack.reason
        );
        if ack.state == AckState::Waiting {
            let _ = writeln!(
                out,
                "  its instance is not configured now; it applies again when the instance comes back"
            );
        }
        for cover in &ack.covers {
            let field = cover
                .field
                .as_deref()
                .map(|f| format!(" {f}"))
                .unwrap_or_default();
            // Whether a cover matches says something only while the ack
            // can cover drift; an ended or waiting one covers nothing.
            let matches = match ack.state {
                AckState::Active | AckState::Stale if cover.matches => "matches",
                AckState::Active | AckState::Stale => "no longer matches",
                AckState::Waiting => "waiting",
                AckState::Expired | AckState::Closed => {
                    ack.ended_reason.as_deref().unwrap_or("expired")
                }
            };
            let _ = writeln!(
                out,
                "  {}{field} {} ({matches})",
                cover.subject, cover.fingerprint
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::model::AckSource;
    use crate::ack::view::CoverView;

    fn view(state: AckState, ended_reason: Option<&str>, matches: bool) -> AckView {
        AckView {
            id: "a-1".into(),
            instance: "web".into(),
            source: AckSource::Runtime,
            by: "alice".into(),
            reason: "INC-1".into(),
            created_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            expires_at: "2026-12-02T00:00:00Z".parse().unwrap(),
            state,
            covers: vec![CoverView {
                subject: "Deployment/prod/web".into(),
                field: None,
                fingerprint: "fp1:0123456789abcdef".into(),
                matches,
            }],
            subjects: vec![],
            fields: vec![],
            ended_at: None,
            ended_reason: ended_reason.map(String::from),
        }
    }

    #[test]
    fn a_cover_says_matches_only_while_its_ack_can_cover_drift() {
        // (state, ended reason, the cover's matches, what the cover line says)
        let cases = [
            (AckState::Active, None, true, "(matches)"),
            (AckState::Stale, None, false, "(no longer matches)"),
            (AckState::Closed, Some("closed"), true, "(closed)"),
            (AckState::Closed, Some("deleted"), true, "(deleted)"),
            (AckState::Expired, Some("expired"), true, "(expired)"),
            (AckState::Expired, None, true, "(expired)"),
            (AckState::Waiting, None, false, "(waiting)"),
        ];
        for (state, reason, matches, says) in cases {
            let out = list(&[view(state, reason, matches)]);
            let cover = out.lines().last().unwrap();
            assert!(cover.ends_with(says), "{state:?}: {out}");
            assert_eq!(
                out.contains("not configured now"),
                state == AckState::Waiting,
                "{out}"
            );
        }
    }
}
