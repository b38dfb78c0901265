//! The broker's own applications on the HTTP port: the web console's page and API
//! ([`crate::ui`]) and the schema registry's REST API ([`crate::schema::rest`]). Both reach
//! the broker as clients of its own listeners, as the logged-in user (HTTP Basic, checked
//! as a SASL login) or, without a SASL listener, through one that needs no login; each call
//! is answered on a thread of its own. Also the threads that keep their background state:
//! the registry's loader and the group lag sampler.
//!
//! Invariant: nothing here reads shard state but the settings and the process-wide
//! registry and lag history; all data comes through the Kafka protocol.

use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncReadExt;
use tracing::warn;

use super::shard::Shard;

/// The web console ([`crate::ui`]): the page, or an API call answered on a blocking
/// thread through this broker's own Kafka listener.
pub(super) async fn console<S: futures::AsyncRead + Unpin>(
    shard: &Rc<Shard>,
    stream: &mut S,
    method: &str,
    target: &str,
    head: &str,
    read: &[u8],
) -> (&'static str, &'static str, String) {
    use crate::ui::{self, UiMode};
    let mode = shard.cfg.ui;
    if mode == UiMode::Off {
        return (
            "404 Not Found",
            "text/plain",
            "the console is off (ui = off)\n".into(),
        );
    }
    let (path, query) = ui::split_target(target);
    let Reach { addr, security } = match console_login(shard, head) {
        Ok(x) => x,
        Err(refusal) => return refusal,
    };
    let bootstrap = bootstrap_of(addr);
    if security.sasl.is_some() && (path == "/ui" || path == "/ui/") {
        // The page itself needs the login: the browser asks once and sends it with every
        // call after. Checked by authenticating to the broker as that user.
        if !login_ok(&bootstrap, &security).await {
            return (
                "401 Unauthorized",
                "text/plain",
                "log in with a SASL user\n".into(),
            );
        }
    }
    match (method, path.as_str()) {
        ("GET", "/ui" | "/ui/") => {
            return ("200 OK", "text/html; charset=utf-8", ui::PAGE.to_string())
        }
        ("GET", "/ui/mode") => return ("200 OK", "text/plain", format!("{}\n", mode.name())),
        _ if !path.starts_with("/api/") => {
            return ("404 Not Found", "text/plain", "not found\n".into())
        }
        _ => {}
    }
    let body = match read_body(stream, head, read).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let (method, sub) = (method.to_string(), path["/api/".len()..].to_string());
    let writable = mode == UiMode::ReadWrite;
    let history = shard.lag_history.clone();
    let answered = crate::runtime::on_thread(move || {
        let call = ui::api::Call {
            method: &method,
            path: &sub,
            query,
            body: &body,
            history: Some(&history),
        };
        crate::admin::client::with_security(security, || {
            ui::api::answer(&bootstrap, &call, writable)
        })
    })
    .await;
    let Some((code, json)) = answered else {
        return (
            "500 Internal Server Error",
            "application/json",
            "{\"error\":\"the console's call failed\"}".into(),
        );
    };
    (status_line(code), "application/json", json.to_string())
}

fn status_line(code: u16) -> &'static str {
    match code {
        200 => "200 OK",
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        409 => "409 Conflict",
        422 => "422 Unprocessable Entity",
        500 => "500 Internal Server Error",
        503 => "503 Service Unavailable",
        _ => "400 Bad Request",
    }
}

/// The body of a request (its Content-Length, at most the console's limit): what was read
/// with the head, then the rest.
async fn read_body<S: futures::AsyncRead + Unpin>(
    stream: &mut S,
    head: &str,
    read: &[u8],
) -> Result<Vec<u8>, Refusal> {
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    if length > crate::ui::MAX_BODY {
        return Err((
            "413 Payload Too Large",
            "application/json",
            "{\"error\":\"body too large\"}".into(),
        ));
    }
    let mut body = read[..read.len().min(length)].to_vec();
    // Bounded by the length checked above and the connection's read timeout.
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 << 10)];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(body)
}

/// The address a client of this broker's listener `addr` connects to.
fn bootstrap_of(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// Whether `security`'s SASL login is accepted by the broker at `bootstrap` (checked by
/// authenticating, on a thread).
async fn login_ok(bootstrap: &str, security: &crate::admin::client_config::ClientSecurity) -> bool {
    let (at, sec) = (bootstrap.to_string(), security.clone());
    let ok = crate::runtime::on_thread(move || {
        crate::admin::client::with_security(sec, || {
            crate::admin::client::Client::connect(&at).is_ok()
        })
    })
    .await;
    ok == Some(true)
}

/// The schema registry's REST API ([`crate::schema::rest`]): reached and authenticated as
/// the console is, each call answered on a thread of its own.
pub(super) async fn registry<S: futures::AsyncRead + Unpin>(
    shard: &Rc<Shard>,
    stream: &mut S,
    method: &str,
    target: &str,
    head: &str,
    read: &[u8],
) -> (&'static str, &'static str, String) {
    use crate::schema::rest;
    if !shard.cfg.schema_registry {
        return (
            "404 Not Found",
            rest::CONTENT_TYPE,
            "{\"error_code\":404,\"message\":\"the schema registry is off (schema.registry.enable = false)\"}".into(),
        );
    }
    let Reach { addr, security } = match console_login(shard, head) {
        Ok(x) => x,
        Err((status, _, body)) => {
            let msg = serde_json::json!({"error_code": 401, "message": body.trim()});
            return (status, rest::CONTENT_TYPE, msg.to_string());
        }
    };
    let bootstrap = bootstrap_of(addr);
    if security.sasl.is_some() && !login_ok(&bootstrap, &security).await {
        let msg = serde_json::json!({"error_code": 401, "message": "log in with a SASL user"});
        return ("401 Unauthorized", rest::CONTENT_TYPE, msg.to_string());
    }
    let body = match read_body(stream, head, read).await {
        Ok(b) => b,
        Err((status, _, _)) => {
            let msg = serde_json::json!({"error_code": 413, "message": "body too large"});
            return (status, rest::CONTENT_TYPE, msg.to_string());
        }
    };
    let (method, target, registry) = (
        method.to_string(),
        target.to_string(),
        shard.registry.clone(),
    );
    let answered = crate::runtime::on_thread(move || {
        let call = rest::Call {
            method: &method,
            target: &target,
            body: &body,
        };
        crate::admin::client::with_security(security, || rest::answer(&registry, &bootstrap, &call))
    })
    .await;
    match answered {
        Some((code, json)) => (status_line(code), rest::CONTENT_TYPE, json),
        None => (
            "500 Internal Server Error",
            rest::CONTENT_TYPE,
            "{\"error_code\":50001,\"message\":\"the registry's call failed\"}".into(),
        ),
    }
}

/// A response the console sends instead of answering: status, content type, body.
type Refusal = (&'static str, &'static str, String);

/// How the console reaches this broker: the listener's address and the client settings
/// (a login, a TLS client trusting the broker's own certificate).
struct Reach {
    addr: std::net::SocketAddr,
    security: crate::admin::client_config::ClientSecurity,
}

/// The HTTP Basic login of a request, if it carries one.
fn basic_login(head: &str) -> Option<(String, String)> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let token = v.trim().strip_prefix("Basic ")?;
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    })
}

/// Which listener the console reaches the broker through, and as whom. A SASL listener
/// when there is one (SASL_PLAINTEXT first, then SASL_SSL): the request's HTTP Basic login,
/// checked by the broker as a SASL login, so the user's ACLs apply. Else a PLAINTEXT
/// listener, or an SSL one that does not require client certificates (as ANONYMOUS).
fn console_login(shard: &Shard, head: &str) -> Result<Reach, Refusal> {
    use crate::admin::client_config::{ClientSecurity, Login};
    use crate::security::listeners::Protocol;
    let sec = &shard.security;
    let find = |p: Protocol| sec.listeners.iter().find(|l| l.protocol == p);
    // The broker's own certificate: the console trusts exactly it.
    let pinned = || -> Result<_, Refusal> {
        let tls = sec.tls.as_ref().ok_or((
            "503 Service Unavailable",
            "text/plain",
            "TLS listener without TLS settings\n".to_string(),
        ))?;
        crate::security::pinned::client_trusting(tls.certificate()).map_err(|e| {
            (
                "503 Service Unavailable",
                "text/plain",
                format!("the console cannot make a TLS client: {e}\n"),
            )
        })
    };
    let sasl = find(Protocol::SaslPlaintext)
        .map(|l| (l, false))
        .or_else(|| find(Protocol::SaslSsl).map(|l| (l, true)));
    if let Some((l, tls)) = sasl {
        let Some((user, password)) = basic_login(head) else {
            return Err((
                "401 Unauthorized",
                "text/plain",
                "log in with a SASL user\n".into(),
            ));
        };
        let mechanism = sec
            .sasl_mechanisms
            .iter()
            .find(|m| m.as_str() != "GSSAPI")
            .cloned()
            .unwrap_or_else(|| "SCRAM-SHA-512".into());
        let security = ClientSecurity {
            tls: if tls { Some(pinned()?) } else { None },
            sasl: Some(Login {
                mechanism,
                user,
                password,
            }),
        };
        return Ok(Reach {
            addr: l.bind,
            security,
        });
    }
    unattended(sec).ok_or((
        "503 Service Unavailable",
        "text/plain",
        "the console reaches the broker as a client of its own listeners: it needs a PLAINTEXT, SASL_PLAINTEXT or SASL_SSL listener, or an SSL one that does not require client certificates (ssl.client.auth)\n".into(),
    ))
}

/// A listener the broker can be reached on without a login: PLAINTEXT, else SSL that does
/// not require client certificates (trusting the broker's own certificate).
fn unattended(sec: &crate::security::settings::Resolved) -> Option<Reach> {
    use crate::admin::client_config::ClientSecurity;
    use crate::security::listeners::Protocol;
    use crate::security::tls::ClientAuth;
    let find = |p: Protocol| sec.listeners.iter().find(|l| l.protocol == p);
    if let Some(l) = find(Protocol::Plaintext) {
        return Some(Reach {
            addr: l.bind,
            security: ClientSecurity::default(),
        });
    }
    let tls = sec.tls.as_ref()?;
    if tls.client_auth() == ClientAuth::Required {
        return None;
    }
    let l = find(Protocol::Ssl)?;
    let pinned = crate::security::pinned::client_trusting(tls.certificate()).ok()?;
    Some(Reach {
        addr: l.bind,
        security: ClientSecurity {
            tls: Some(pinned),
            sasl: None,
        },
    })
}

/// Samples every group's lag for the console ([`crate::ui::lag_history`]) on a thread of
/// its own until `stop`, every `interval`, through a listener that needs no login.
pub fn spawn_lag_sampler(
    history: Arc<crate::ui::lag_history::LagHistory>,
    security: Arc<crate::security::settings::Resolved>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    spawn_unattended("lag-sampler", security, move |reach| {
        history.run(interval, reach, &stop)
    })
}

/// Runs the schema registry's loader ([`crate::schema::store::Registry::run_loader`]) on a
/// thread of its own until `stop`: it reads `_schemas` through a listener that needs no
/// login (none: the registry loads on its first API call instead).
pub fn spawn_registry_loader(
    registry: Arc<crate::schema::store::Registry>,
    security: Arc<crate::security::settings::Resolved>,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    spawn_unattended("schema-registry", security, move |reach| {
        registry.run_loader(reach, &stop)
    })
}

/// How a background thread reaches the broker without a login: a fresh (bootstrap,
/// identity) each time it asks, `None` if no listener allows it.
type UnattendedReach<'a> =
    &'a dyn Fn() -> Option<(String, crate::admin::client_config::ClientSecurity)>;

/// Runs `body` on a thread named `name`, giving it [`unattended`] reach to the broker.
fn spawn_unattended(
    name: &str,
    security: Arc<crate::security::settings::Resolved>,
    body: impl FnOnce(UnattendedReach<'_>) + Send + 'static,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let reach = || unattended(&security).map(|r| (bootstrap_of(r.addr), r.security));
            body(&reach);
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            warn!("{name} thread not started: {e}");
            None
        }
    }
}
