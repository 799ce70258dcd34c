//! The token server of a registry with bearer-token auth (distribution's `auth: token:`), for
//! the pull tests: a small HTTP server on 127.0.0.1 that issues RS256-signed JWTs the way
//! Docker's token servers do, so that rbuild meets the real challenge, the real realm request
//! and a registry that really checks the token's signature, issuer, audience and access.
//!
//! - `GET /token?service=…&scope=…` with basic auth: a token for the scopes asked for, when the
//!   user and password are known (`{"token": JWT, "access_token": JWT, …}`), else 401. A refresh
//!   token it accepts is good as the password too, with an empty user name (or its own user):
//!   what containerd sends on the GET that follows a 404 or 405 to the POST.
//! - `POST /token` with a form `grant_type=refresh_token&refresh_token=…&service=…&scope=…&
//!   client_id=…`: the OAuth2 exchange of an identity token (Docker's `identitytoken`), answered
//!   only for the refresh tokens it accepts (`{"access_token": JWT, …}`), else 401.
//!
//! [`Quirks`] make it a server that rotates refresh tokens (each grant answers with a new
//! `refresh_token`, and only the newest is accepted from then on), or one without the OAuth2
//! endpoint (the POST answered 404 or 405).
//!
//! The signing key and its self-signed certificate are made per server with the `openssl` CLI;
//! the JWT header carries the certificate in `x5c`, and the registry trusts it through its
//! `rootcertbundle`. Every request is recorded, so tests can check how rbuild asked.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::process::run_tool;

/// The `service` the registry names in its challenge and expects as the tokens' audience.
pub const SERVICE: &str = "rbuild-e2e-registry";
/// The `iss` of the tokens, which the registry checks.
pub const ISSUER: &str = "rbuild-e2e-token-server";
/// How long a token lasts (`exp` − `iat`, and `expires_in`).
const TOKEN_SECONDS: u64 = 300;

/// How a server departs from the plain one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// Every refresh-token grant also answers with a new `refresh_token`, which replaces the one
    /// sent: only the newest refresh token of each is accepted from then on (OAuth2 rotation).
    pub rotate_refresh_tokens: bool,
    /// The POST is answered with this status (404, 405): a token server without the OAuth2
    /// endpoint.
    pub refuse_post: Option<u16>,
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The query (GET) or form (POST) parameters; a name may repeat (`scope`).
    pub params: BTreeMap<String, Vec<String>>,
    /// The user of the request's basic auth, if it had one.
    pub basic_user: Option<String>,
    /// The password of the request's basic auth, if it had one.
    pub basic_password: Option<String>,
    /// Whether a token was issued.
    pub granted: bool,
}

impl TokenRequest {
    /// The first value of `name`, or "".
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).and_then(|v| v.first()).map_or("", String::as_str)
    }
}

/// Who may have tokens, and the key that signs them.
struct Issuer {
    /// user → password, for GET with basic auth.
    users: BTreeMap<String, String>,
    /// refresh token → user, the ones accepted now (rotation replaces them).
    refresh_tokens: Mutex<BTreeMap<String, String>>,
    quirks: Quirks,
    key: RsaKeyPair,
    /// The certificate of `key`, DER, as `x5c` carries it.
    cert_der: Vec<u8>,
    requests: Mutex<Vec<TokenRequest>>,
    issued: AtomicU64,
}

/// A running token server; stopped when dropped.
pub struct TokenServer {
    port: u16,
    dir: TempDir,
    issuer: Arc<Issuer>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// A server that knows `users` (user, password) and `refresh_tokens` (token, user).
    pub fn start(users: &[(&str, &str)], refresh_tokens: &[(&str, &str)]) -> TokenServer {
        TokenServer::start_with(users, refresh_tokens, Quirks::default())
    }

    /// [`TokenServer::start`], with `quirks`.
    pub fn start_with(users: &[(&str, &str)], refresh_tokens: &[(&str, &str)], quirks: Quirks) -> TokenServer {
        let dir = tempfile::Builder::new().prefix("rbuild-e2e-token-").tempdir().expect("temp dir");
        let (key, cert_der) = make_key_and_certificate(&dir);
        let issuer = Arc::new(Issuer {
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            refresh_tokens: Mutex::new(refresh_tokens.iter().map(|(t, u)| (t.to_string(), u.to_string())).collect()),
            quirks,
            key,
            cert_der,
            requests: Mutex::new(Vec::new()),
            issued: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the token server on 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (issuer, stop) = (issuer.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let issuer = issuer.clone();
                    std::thread::spawn(move || serve(stream, &issuer));
                }
            })
        };
        TokenServer { port, dir, issuer, stop, thread: Some(thread) }
    }

    /// The realm the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The PEM certificate the registry trusts tokens by (its `rootcertbundle`).
    pub fn cert_bundle(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The refresh tokens accepted now (with rotation, the newest of each), sorted.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.issuer.refresh_tokens.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.issuer.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop sees the flag with the next connection: make one.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An RSA key (PKCS#8) and a self-signed certificate for it, made by `openssl` in `dir`
/// (`key.pem`, `cert.pem`, and their DER forms).
fn make_key_and_certificate(dir: &TempDir) -> (RsaKeyPair, Vec<u8>) {
    let path = |name: &str| dir.path().join(name).display().to_string();
    run_tool(
        "openssl",
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=rbuild-e2e-token-issuer", "-keyout", &path("key.pem"), "-out", &path("cert.pem"),
        ],
    );
    run_tool("openssl", &["pkcs8", "-topk8", "-nocrypt", "-in", &path("key.pem"), "-outform", "DER", "-out", &path("key.der")]);
    run_tool("openssl", &["x509", "-in", &path("cert.pem"), "-outform", "DER", "-out", &path("cert.der")]);
    let key_der = std::fs::read(path("key.der")).expect("reading key.der");
    let key = RsaKeyPair::from_pkcs8(&key_der).unwrap_or_else(|e| panic!("openssl's key is not PKCS#8 RSA: {e}"));
    (key, std::fs::read(path("cert.der")).expect("reading cert.der"))
}

/// Answers one connection: one request, then the connection is closed.
fn serve(mut stream: TcpStream, issuer: &Issuer) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&stream) else { return };
    let (status, body) = issuer.answer(&request);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        405 => "Method Not Allowed",
        _ => "Not Found",
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A request as the issuer sees it.
struct HttpRequest {
    method: String,
    path: String,
    params: BTreeMap<String, Vec<String>>,
    /// The basic-auth user and password, if given.
    basic: Option<(String, String)>,
}

fn read_request(stream: &TcpStream) -> Option<HttpRequest> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut content_length = 0usize;
    let mut basic = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("authorization") {
            basic = value
                .strip_prefix("Basic ")
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let encoded = if method == "POST" { String::from_utf8(body).ok()? } else { query.to_string() };
    Some(HttpRequest { method, path: path.to_string(), params: parse_form(&encoded), basic })
}

/// `a=1&b=x+y&b=%2F` → {a: [1], b: ["x y", "/"]}.
fn parse_form(encoded: &str) -> BTreeMap<String, Vec<String>> {
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in encoded.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(percent_decode(name)).or_default().push(percent_decode(value));
    }
    params
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Issuer {
    fn answer(&self, request: &HttpRequest) -> (u16, Value) {
        let (status, body) = if request.path != "/token" {
            (404, json!({"details": "not found"}))
        } else if request.method == "GET" {
            self.answer_basic(request)
        } else if request.method == "POST" {
            self.answer_refresh(request)
        } else {
            (400, json!({"details": "unsupported method"}))
        };
        let record = TokenRequest {
            method: request.method.clone(),
            params: request.params.clone(),
            basic_user: request.basic.as_ref().map(|(u, _)| u.clone()),
            basic_password: request.basic.as_ref().map(|(_, p)| p.clone()),
            granted: status == 200,
        };
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).push(record);
        (status, body)
    }

    /// GET with basic auth: the token Docker's `fetchTokenWithBasicAuth` asks for, or
    /// containerd's GET with an identity token as the password.
    fn answer_basic(&self, request: &HttpRequest) -> (u16, Value) {
        let Some((user, password)) = &request.basic else {
            return (401, json!({"details": "authentication required"}));
        };
        let by_refresh_token = self.refresh_tokens.lock().unwrap_or_else(|e| e.into_inner()).get(password).cloned();
        let user = match by_refresh_token {
            Some(owner) if user.is_empty() || *user == owner => owner,
            _ if self.users.get(user) == Some(password) => user.clone(),
            _ => return (401, json!({"details": "incorrect username or password"})),
        };
        let token = self.token(&user, &request.params);
        let body = json!({"token": token, "access_token": token, "expires_in": TOKEN_SECONDS});
        (200, body)
    }

    /// POST: the OAuth2 refresh-token grant Docker uses for identity tokens.
    fn answer_refresh(&self, request: &HttpRequest) -> (u16, Value) {
        if let Some(status) = self.quirks.refuse_post {
            return (status, json!({"details": "no OAuth2 endpoint here"}));
        }
        let param = |name: &str| request.params.get(name).and_then(|v| v.first()).map_or("", String::as_str);
        if param("grant_type") != "refresh_token" {
            return (400, json!({"error": "unsupported_grant_type"}));
        }
        if param("client_id").is_empty() {
            return (400, json!({"error": "invalid_request", "error_description": "client_id is required"}));
        }
        let mut refresh_tokens = self.refresh_tokens.lock().unwrap_or_else(|e| e.into_inner());
        let Some(user) = refresh_tokens.get(param("refresh_token")).cloned() else {
            return (401, json!({"error": "invalid_grant", "error_description": "unknown refresh token"}));
        };
        // The form's scope holds several scopes separated by spaces.
        let scopes: Vec<String> = param("scope").split_whitespace().map(str::to_string).collect();
        let mut params = request.params.clone();
        params.insert("scope".into(), scopes);
        let token = self.token(&user, &params);
        let mut body = json!({"access_token": token, "expires_in": TOKEN_SECONDS, "scope": param("scope")});
        if self.quirks.rotate_refresh_tokens {
            let rotated = format!("refresh-{user}-{}-{}", std::process::id(), self.issued.fetch_add(1, Ordering::SeqCst));
            refresh_tokens.remove(param("refresh_token"));
            refresh_tokens.insert(rotated.clone(), user);
            body["refresh_token"] = json!(rotated);
        }
        (200, body)
    }

    /// A signed JWT for `user` granting pull and push of every repository the `scope`
    /// parameters name (`repository:NAME:ACTIONS`).
    fn token(&self, user: &str, params: &BTreeMap<String, Vec<String>>) -> String {
        let mut access = Vec::new();
        for scope in params.get("scope").into_iter().flatten() {
            let mut fields = scope.splitn(2, ':');
            let (Some(kind), Some(rest)) = (fields.next(), fields.next()) else { continue };
            let Some((name, actions)) = rest.rsplit_once(':') else { continue };
            let granted: Vec<&str> = actions.split(',').filter(|a| *a == "pull" || *a == "push").collect();
            access.push(json!({"type": kind, "name": name, "actions": granted}));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
        let serial = self.issued.fetch_add(1, Ordering::SeqCst);
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&self.cert_der)]});
        let claims = json!({
            "iss": ISSUER,
            "sub": user,
            "aud": params.get("service").and_then(|v| v.first()).cloned().unwrap_or_default(),
            "exp": now + TOKEN_SECONDS,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("rbuild-e2e-{}-{serial}", std::process::id()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .expect("signing a token");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let params = parse_form("grant_type=refresh_token&scope=repository%3Ae2e%2Fbase%3Apull+repository%3Ax%3Apull&scope=b");
        assert_eq!(params["grant_type"], vec!["refresh_token"]);
        assert_eq!(params["scope"], vec!["repository:e2e/base:pull repository:x:pull", "b"]);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
