//! A blocking client of the endpoint, for operator tools and tests (`ureq`, no TLS): reads a
//! path, or runs an admin action with the node's token.

use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong talking to an endpoint.
#[derive(Debug)]
pub enum ClientError {
    /// No answer: the connection failed or timed out.
    Transport(String),
    /// An answer that is not a success: the status and the body (the endpoint's bodies are
    /// JSON `{"error": …}`).
    Status(u16, String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Transport(e) => write!(f, "no answer: {e}"),
            ClientError::Status(s, body) => write!(f, "HTTP {s}: {body}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Largest body read (16 MiB).
const MAX_BODY: u64 = 16 << 20;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<String, ClientError> {
    let mut r = r.map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(ClientError::Status(status, body))
    }
}

/// `GET` `path` (e.g. `/metrics`) from the endpoint at `addr`; the body on status 200.
///
/// # Errors
///
/// No answer within 30 s, or a status other than 2xx.
pub fn get(addr: SocketAddr, path: &str) -> Result<String, ClientError> {
    finish(agent().get(format!("http://{addr}{path}")).call())
}

/// Runs admin action `name` on the endpoint at `addr` with `token` and the request `body`
/// (the action's argument, often JSON); the action's answer on success.
///
/// # Errors
///
/// No answer, or the endpoint refused: 401 (wrong or no token), 403 (admin disabled on that
/// node), 404 (no such action), 400 (the action failed: its message), 413 (body too large).
pub fn admin(addr: SocketAddr, token: &str, name: &str, body: &str) -> Result<String, ClientError> {
    finish(
        agent()
            .post(format!("http://{addr}/api/admin/{name}"))
            .header("Authorization", format!("Bearer {token}"))
            .send(body),
    )
}
