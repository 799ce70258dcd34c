//! Identity tokens, exchanged for access tokens the way Docker exchanges them.
//!
//! `docker login` keeps an identity token instead of a password when the
//! registry's token server hands out OAuth2 refresh tokens (`identitytoken` in
//! `config.json`, or a credential helper answering with the user `<token>`).
//! oci-client only knows passwords and ready bearer tokens, so rbuild does the
//! exchange itself, as Docker's registry client does: the registry's
//! `WWW-Authenticate: Bearer realm=…,service=…` challenge names the token
//! server, and a form POSTed there (`grant_type=refresh_token`,
//! `refresh_token`, `service`, `scope=repository:NAME:pull`, `client_id`)
//! answers with an access token for the repository, which oci-client then
//! sends as the bearer token. A push asks for `pull,push` on its repository,
//! and `pull` on those it mounts blobs from: several scopes, separated by
//! spaces in the form, a `scope` parameter each in a GET, as Docker sends them.
//!
//! [`bearer_token`] is the same GET for a password (or no credential): what
//! a push asks for when oci-client, which asks for one repository's scope,
//! cannot.
//!
//! A token server that rotates refresh tokens answers with a new
//! `refresh_token` beside the access token; the old one is then dead, so the
//! new one is used from then on and stored back where the old one was found
//! (see [`TokenOrigin`]); a failure to store it is a warning, not an error.
//! A token server without the OAuth2 endpoint answers the POST with 404 or
//! 405; then, as containerd does, the token is asked for with a `GET` of the
//! realm (`service`, `scope`, and the identity token as basic auth with an
//! empty user name, as containerd sends it), for the rest of the exchange.
//!
//! Access tokens are kept per repository for less than the 60 seconds every
//! registry token lasts at least (the distribution spec's minimum, and what
//! oci-client assumes of a token that does not say), and fetched again after
//! that, so a long pull never sends an expired one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http_auth::ChallengeParser;

use super::auth::TokenOrigin;

/// The `client_id` of the exchange (Docker sends `docker`, BuildKit
/// `buildkit-client`); token servers require one but accept any.
const CLIENT_ID: &str = "rbuild";
/// How long an access token is used before a new one is fetched.
const REUSE: Duration = Duration::from_secs(45);
/// How long a token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The exchange of one identity token, for one registry.
pub(super) struct TokenExchange {
    http: reqwest::Client,
    /// `host[:port]` of the registry, for messages.
    registry: String,
    /// `scheme://host[:port]` of the registry.
    base_url: String,
    /// Where the identity token was found, to store a rotated one there.
    origin: Option<TokenOrigin>,
    /// The registry's challenge, read once; `None` when it wants no auth.
    challenge: tokio::sync::OnceCell<Option<Challenge>>,
    /// Locked for the whole of a token request: one at a time, each with the
    /// newest refresh token.
    state: tokio::sync::Mutex<ExchangeState>,
    /// Warnings for the pull to pass on (a rotated token not stored).
    warnings: std::sync::Mutex<Vec<String>>,
}

struct ExchangeState {
    /// The identity token, replaced when the token server rotates it.
    refresh_token: String,
    /// Access tokens by scopes asked for, with when they were fetched.
    tokens: HashMap<String, (String, Instant)>,
    /// The status the token server answered the POST with when it has no
    /// OAuth2 endpoint (404, 405): tokens are asked for with GET since.
    post_refused: Option<u16>,
}

/// Where the registry sends clients for tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: String,
}

/// What a pull sends the registry.
pub(super) enum Access {
    /// Nothing: the registry wants no auth.
    Anonymous,
    /// This access token; `new` when it was just fetched (the client does not
    /// hold it yet).
    Token { token: String, new: bool },
}

/// Why no access token could be had.
#[derive(Debug)]
pub(super) enum ExchangeError {
    /// The registry or its token server could not be reached.
    Request(reqwest::Error),
    /// The registry asks for something else than bearer tokens (its challenge).
    NotBearer(String),
    /// The token server refused the identity token; `post_refused` when that
    /// was the answer to the GET that followed a 404 or 405 to the POST.
    Refused { realm: String, status: u16, detail: String, post_refused: Option<u16> },
    /// The token server's answer holds no token.
    BadAnswer { realm: String, reason: String },
}

impl TokenExchange {
    pub(super) fn new(
        refresh_token: String,
        origin: Option<TokenOrigin>,
        registry: &str,
        base_url: String,
        user_agent: &str,
    ) -> Result<TokenExchange, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(30))
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(TokenExchange {
            http,
            registry: registry.to_string(),
            base_url,
            origin,
            challenge: tokio::sync::OnceCell::new(),
            state: tokio::sync::Mutex::new(ExchangeState { refresh_token, tokens: HashMap::new(), post_refused: None }),
            warnings: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// An access token for `scopes` (`repository:NAME:ACTIONS`): the last one
    /// while it is fresh, else a new one from the token server.
    pub(super) async fn access(&self, scopes: &[String]) -> Result<Access, ExchangeError> {
        let challenge = self.challenge.get_or_try_init(|| read_challenge(&self.http, &self.base_url)).await?;
        let Some(challenge) = challenge else { return Ok(Access::Anonymous) };
        let key = scopes.join(" ");
        let mut state = self.state.lock().await;
        if let Some((token, fetched)) = state.tokens.get(&key) {
            if fetched.elapsed() < REUSE {
                return Ok(Access::Token { token: token.clone(), new: false });
            }
        }
        let fetched = Instant::now();
        let token = self.exchange(&mut state, challenge, scopes).await?;
        state.tokens.insert(key, (token.clone(), fetched));
        Ok(Access::Token { token, new: true })
    }

    /// The warnings gathered since the last call.
    pub(super) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The refresh-token grant: a form POSTed to the realm; a GET of the
    /// realm when the token server has no such endpoint.
    async fn exchange(&self, state: &mut ExchangeState, challenge: &Challenge, scopes: &[String]) -> Result<String, ExchangeError> {
        if state.post_refused.is_none() {
            let scope = scopes.join(" ");
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", state.refresh_token.as_str()),
                ("service", challenge.service.as_str()),
                ("scope", scope.as_str()),
                ("client_id", CLIENT_ID),
            ];
            let response = self.http.post(&challenge.realm).form(&form).send().await.map_err(ExchangeError::Request)?;
            let status = response.status().as_u16();
            let body = response.text().await.map_err(ExchangeError::Request)?;
            if (200..300).contains(&status) {
                let answer =
                    parse_answer(&body).map_err(|reason| ExchangeError::BadAnswer { realm: challenge.realm.clone(), reason })?;
                if let Some(rotated) = answer.refresh_token.filter(|t| *t != state.refresh_token) {
                    self.rotate(state, rotated, &challenge.realm);
                }
                return Ok(answer.access_token);
            }
            if !post_unsupported(status) {
                return Err(ExchangeError::Refused {
                    realm: challenge.realm.clone(),
                    status,
                    detail: token_server_detail(&body),
                    post_refused: None,
                });
            }
            state.post_refused = Some(status);
        }
        // The token flow without OAuth2: the identity token as basic auth with
        // an empty user name.
        fetch_with_get(&self.http, challenge, scopes, Some(("", &state.refresh_token)), state.post_refused).await
    }

    /// Uses `rotated` from now on (the token server forgets the old one) and
    /// stores it where the old one came from; a failure is a warning.
    fn rotate(&self, state: &mut ExchangeState, rotated: String, realm: &str) {
        let old = std::mem::replace(&mut state.refresh_token, rotated);
        let failure = match &self.origin {
            None => Some("where the old one came from is not known".to_string()),
            // A blocking write or helper run, while no other token request
            // can start: the next one must find the new token stored.
            Some(origin) => origin
                .store(&old, &state.refresh_token)
                .err()
                .map(|reason| format!("storing it in {} failed: {reason}", origin.describe())),
        };
        if let Some(failure) = failure {
            let registry = &self.registry;
            self.warnings.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                "the token server {realm} replaced the identity token for {registry} with a new one, and {failure}; \
                 the old one may no longer be accepted: if a later pull is refused, log in again with `docker login {registry}`"
            ));
        }
    }
}

/// A bearer token for `scopes` from the token server of the registry at
/// `base_url`, asked with `basic` (user, password) or without credentials;
/// `None` when the registry wants no auth, [`ExchangeError::NotBearer`]
/// when it wants another kind (basic auth).
pub(super) async fn bearer_token(
    http: &reqwest::Client,
    base_url: &str,
    scopes: &[String],
    basic: Option<(&str, &str)>,
) -> Result<Option<String>, ExchangeError> {
    match read_challenge(http, base_url).await? {
        None => Ok(None),
        Some(challenge) => fetch_with_get(http, &challenge, scopes, basic, None).await.map(Some),
    }
}

/// `GET /v2/`: a 401 names the realm; anything else means no auth.
async fn read_challenge(http: &reqwest::Client, base_url: &str) -> Result<Option<Challenge>, ExchangeError> {
    let response = http.get(format!("{base_url}/v2/")).send().await.map_err(ExchangeError::Request)?;
    if response.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Ok(None);
    }
    let header = response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    parse_challenge(&header).map(Some).ok_or(ExchangeError::NotBearer(header))
}

/// The token flow of Docker's token servers: a GET of the realm with the
/// service, a `scope` parameter a scope, and `basic` auth if given.
/// `post_refused` is the status the OAuth2 POST had, when this follows it.
async fn fetch_with_get(
    http: &reqwest::Client,
    challenge: &Challenge,
    scopes: &[String],
    basic: Option<(&str, &str)>,
    post_refused: Option<u16>,
) -> Result<String, ExchangeError> {
    let bad_realm = |reason: String| ExchangeError::BadAnswer { realm: challenge.realm.clone(), reason };
    let mut url = reqwest::Url::parse(&challenge.realm).map_err(|e| bad_realm(format!("its realm is not a URL ({e})")))?;
    {
        let mut query = url.query_pairs_mut();
        if !challenge.service.is_empty() {
            query.append_pair("service", &challenge.service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    let mut request = http.get(url);
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(ExchangeError::Request)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(ExchangeError::Request)?;
    if !(200..300).contains(&status) {
        return Err(ExchangeError::Refused { realm: challenge.realm.clone(), status, detail: token_server_detail(&body), post_refused });
    }
    parse_answer(&body).map(|answer| answer.access_token).map_err(bad_realm)
}

/// `repository:NAME:pull`, the scope of a pull.
pub(super) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// Whether the token server's answer to the POST says it has no OAuth2
/// endpoint, so that the token is asked for with a GET (as containerd does).
fn post_unsupported(status: u16) -> bool {
    matches!(status, 404 | 405)
}

/// The realm and service of the first Bearer challenge in a
/// `WWW-Authenticate` value (the service may be absent: "").
fn parse_challenge(header: &str) -> Option<Challenge> {
    ChallengeParser::new(header).filter_map(Result::ok).find_map(|challenge| {
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let param = |name: &str| {
            challenge
                .params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.to_unescaped())
        };
        Some(Challenge { realm: param("realm")?, service: param("service").unwrap_or_default() })
    })
}

/// What a token server's answer gives.
#[derive(PartialEq, Eq)]
struct TokenAnswer {
    access_token: String,
    /// A new refresh token, when the server rotates them.
    refresh_token: Option<String>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer").field("refresh_token", &self.refresh_token.is_some()).finish_non_exhaustive()
    }
}

/// A token server's JSON answer: its token, `access_token` or `token` (the
/// two mean the same; servers of the GET flow send both), and a non-empty
/// `refresh_token` if it has one.
fn parse_answer(body: &str) -> Result<TokenAnswer, String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).filter(|t| !t.is_empty()).map(str::to_string);
    let access_token = text("access_token").or_else(|| text("token")).ok_or_else(|| "no access_token in its answer".to_string())?;
    Ok(TokenAnswer { access_token, refresh_token: text("refresh_token") })
}

/// What a token server's error answer says: the message of its JSON
/// (`error_description`, `details`, `message`, `errors[].message`, `error`),
/// else its first line.
pub(super) fn token_server_detail(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return first_line(body);
    };
    let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(first_line);
    ["error_description", "details", "message"]
        .iter()
        .find_map(|key| value.get(key).and_then(text))
        .or_else(|| value.get("errors").and_then(|e| e.get(0)).and_then(|e| e.get("message")).and_then(text))
        .or_else(|| value.get("error").and_then(text))
        .unwrap_or_else(|| first_line(body))
}

/// The first line of a server's text, trimmed and cut short for a message.
pub(super) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_the_realm_and_service() {
        let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge { realm: "https://auth.example/token".into(), service: "registry.example".into() })
        );
        let both = r#"Basic realm="x", Bearer realm="http://127.0.0.1:1/token""#;
        assert_eq!(parse_challenge(both).unwrap().realm, "http://127.0.0.1:1/token");
        assert_eq!(parse_challenge(both).unwrap().service, "");
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), None);
        assert_eq!(parse_challenge("Bearer service=\"no-realm\""), None);
    }

    #[test]
    fn answers_give_their_token() {
        let access_token_of = |body: &str| parse_answer(body).map(|a| a.access_token);
        assert_eq!(access_token_of(r#"{"access_token":"a","expires_in":300}"#).unwrap(), "a");
        assert_eq!(access_token_of(r#"{"token":"t"}"#).unwrap(), "t");
        assert!(access_token_of(r#"{"access_token":""}"#).unwrap_err().contains("no access_token"));
        assert!(access_token_of("<html>").unwrap_err().contains("not JSON"));
        let rotated = parse_answer(r#"{"access_token":"a","refresh_token":"r2"}"#).unwrap();
        assert_eq!(rotated.refresh_token.as_deref(), Some("r2"));
        assert!(!format!("{rotated:?}").contains("r2"), "{rotated:?}");
        assert_eq!(parse_answer(r#"{"access_token":"a","refresh_token":""}"#).unwrap().refresh_token, None);
    }

    #[test]
    fn only_404_and_405_to_the_post_fall_back_to_get() {
        assert!(post_unsupported(404));
        assert!(post_unsupported(405));
        for status in [200, 400, 401, 403, 500, 502, 503] {
            assert!(!post_unsupported(status), "{status}");
        }
    }

    /// One request a [`Scripted`] server answered.
    #[derive(Clone, Debug)]
    struct Seen {
        method: String,
        /// Path and query.
        target: String,
        authorization: Option<String>,
        body: String,
    }

    /// A registry and token server on 127.0.0.1 in one: `GET /v2/` is
    /// challenged with its realm `/token`, which `answer` answers.
    struct Scripted {
        port: u16,
        seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    }

    type Answer = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

    impl Scripted {
        fn start(answer: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Scripted {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let answer: std::sync::Arc<Answer> = std::sync::Arc::new(answer);
            let recorded = seen.clone();
            // Ends with the test process.
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    Scripted::serve(stream, port, &*answer, &recorded);
                }
            });
            Scripted { port, seen }
        }

        fn serve(stream: std::net::TcpStream, port: u16, answer: &Answer, seen: &std::sync::Mutex<Vec<Seen>>) {
            use std::io::{BufRead, Read, Write};
            let mut reader = std::io::BufReader::new(&stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, target) = (parts.next().unwrap().to_string(), parts.next().unwrap().to_string());
            let (mut length, mut authorization) = (0, None);
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let Some((name, value)) = header.trim_end().split_once(':') else { break };
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                } else if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.trim().to_string());
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request = Seen { method, target, authorization, body: String::from_utf8(body).unwrap() };
            let (status, body, challenge) = if request.target == "/v2/" {
                let realm = format!("http://127.0.0.1:{port}/token");
                (401, "{}".to_string(), format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"svc\"\r\n"))
            } else {
                seen.lock().unwrap().push(request.clone());
                let (status, body) = answer(&request);
                (status, body, String::new())
            };
            let response = format!(
                "HTTP/1.1 {status} Scripted\r\n{challenge}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            (&stream).write_all(response.as_bytes()).unwrap();
        }

        fn exchange(&self, refresh_token: &str, origin: Option<TokenOrigin>) -> TokenExchange {
            // As `Registry::new` does; a second install fails harmlessly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let base = format!("http://127.0.0.1:{}", self.port);
            TokenExchange::new(refresh_token.to_string(), origin, &format!("127.0.0.1:{}", self.port), base, "rbuild-test").unwrap()
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }

    fn token_of(access: Result<Access, ExchangeError>) -> String {
        match access {
            Ok(Access::Token { token, .. }) => token,
            Ok(Access::Anonymous) => panic!("no token"),
            Err(e) => panic!("{e:?}"),
        }
    }

    /// A token server without the OAuth2 endpoint (404 or 405 to the POST) is
    /// asked with a GET: service, scope, the identity token as basic auth
    /// with an empty user; the POST is not tried again.
    #[test]
    fn a_post_answered_404_or_405_is_followed_by_a_get() {
        for refused in [404, 405] {
            let server = Scripted::start(move |request| match request.method.as_str() {
                "POST" => (refused, r#"{"details":"no such endpoint"}"#.to_string()),
                _ => (200, format!(r#"{{"token":"via-get-{}"}}"#, request.target.len())),
            });
            let exchange = server.exchange("refresh-1", None);
            let first = token_of(run(exchange.access(&[pull_scope("a/b")])));
            // A push's scopes: a `scope` parameter each.
            let second = token_of(run(exchange.access(&["repository:c/d:pull,push".to_string(), pull_scope("a/b")])));
            assert!(first.starts_with("via-get-") && second.starts_with("via-get-"), "{first} {second}");
            let seen = server.seen();
            let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
            assert_eq!(methods, ["POST", "GET", "GET"], "{refused}: {seen:?}");
            assert!(seen[0].body.contains("grant_type=refresh_token"), "{seen:?}");
            assert_eq!(seen[1].target, "/token?service=svc&scope=repository%3Aa%2Fb%3Apull");
            assert_eq!(seen[2].target, "/token?service=svc&scope=repository%3Ac%2Fd%3Apull%2Cpush&scope=repository%3Aa%2Fb%3Apull");
            // base64(":refresh-1")
            assert_eq!(seen[1].authorization.as_deref(), Some("Basic OnJlZnJlc2gtMQ=="));
            assert!(exchange.take_warnings().is_empty());
        }
    }

    /// The OAuth2 form holds a push's scopes in one `scope`, separated by
    /// spaces; a token is kept per set of scopes.
    #[test]
    fn the_form_joins_scopes_with_spaces() {
        let server = Scripted::start(|_| (200, r#"{"access_token":"pushing"}"#.to_string()));
        let exchange = server.exchange("refresh-1", None);
        let scopes = ["repository:c/d:pull,push".to_string(), pull_scope("a/b")];
        assert_eq!(token_of(run(exchange.access(&scopes))), "pushing");
        assert!(matches!(run(exchange.access(&scopes)), Ok(Access::Token { new: false, .. })));
        assert!(matches!(run(exchange.access(&[pull_scope("c/d")])), Ok(Access::Token { new: true, .. })));
        let seen = server.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].body.contains("scope=repository%3Ac%2Fd%3Apull%2Cpush+repository%3Aa%2Fb%3Apull"), "{seen:?}");
    }

    /// A password is sent to the realm as basic auth, with every scope.
    #[test]
    fn a_password_gets_a_token_for_several_scopes() {
        let server = Scripted::start(|_| (200, r#"{"token":"for-both"}"#.to_string()));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", server.port);
        let scopes = ["repository:c/d:pull,push".to_string(), pull_scope("a/b")];
        let token = run(bearer_token(&http, &base, &scopes, Some(("bob", "pw")))).unwrap();
        assert_eq!(token.as_deref(), Some("for-both"));
        let seen = server.seen();
        assert_eq!(seen[0].target, "/token?service=svc&scope=repository%3Ac%2Fd%3Apull%2Cpush&scope=repository%3Aa%2Fb%3Apull");
        // base64("bob:pw")
        assert_eq!(seen[0].authorization.as_deref(), Some("Basic Ym9iOnB3"));
    }

    /// Any other refusal of the POST is the answer: no GET follows. A GET
    /// that is refused says it followed the POST's 405.
    #[test]
    fn other_refusals_of_the_post_do_not_fall_back() {
        for status in [400, 401, 403, 500] {
            let server = Scripted::start(move |_| (status, r#"{"error":"invalid_grant"}"#.to_string()));
            let exchange = server.exchange("refresh-1", None);
            match run(exchange.access(&[pull_scope("a/b")])) {
                Err(ExchangeError::Refused { status: got, post_refused: None, detail, .. }) => {
                    assert_eq!((got, detail.as_str()), (status, "invalid_grant"))
                }
                other => panic!("{status}: {:?}", other.map(|_| ())),
            }
            assert_eq!(server.seen().len(), 1, "{status}: {:?}", server.seen());
        }
        let server = Scripted::start(|request| match request.method.as_str() {
            "POST" => (405, String::new()),
            _ => (401, r#"{"details":"incorrect username or password"}"#.to_string()),
        });
        match run(server.exchange("refresh-1", None).access(&[pull_scope("a/b")])) {
            Err(ExchangeError::Refused { status: 401, post_refused: Some(405), .. }) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    /// A new refresh token in the answer is used from then on and stored
    /// where the old one came from; when it cannot be stored, a warning says
    /// so without showing either token.
    #[test]
    fn rotated_refresh_tokens_are_used_and_stored_back() {
        let serial = std::sync::atomic::AtomicU32::new(0);
        let server = Scripted::start(move |_| {
            let n = serial.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 2;
            (200, format!(r#"{{"access_token":"access-{n}","refresh_token":"rotated-{n}"}}"#))
        });
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"auths":{"r.example":{"auth":"dTo=","identitytoken":"rotated-1"}}}"#).unwrap();
        let origin = TokenOrigin::ConfigFile { path: config.clone(), key: "r.example".into() };
        let exchange = server.exchange("rotated-1", Some(origin));
        assert_eq!(token_of(run(exchange.access(&[pull_scope("a/b")]))), "access-2");
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            r#"{"auths":{"r.example":{"auth":"dTo=","identitytoken":"rotated-2"}}}"#
        );
        assert_eq!(token_of(run(exchange.access(&[pull_scope("c/d")]))), "access-3");
        let seen = server.seen();
        assert!(seen[0].body.contains("refresh_token=rotated-1"), "{seen:?}");
        assert!(seen[1].body.contains("refresh_token=rotated-2"), "the newest token is sent: {seen:?}");
        assert!(std::fs::read_to_string(&config).unwrap().contains(r#""identitytoken":"rotated-3""#));
        assert!(exchange.take_warnings().is_empty());

        // The file changed meanwhile: it is kept, and the pull is told.
        std::fs::write(&config, r#"{"auths":{"r.example":{"identitytoken":"from-a-new-login"}}}"#).unwrap();
        assert_eq!(token_of(run(exchange.access(&[pull_scope("e/f")]))), "access-4");
        let warnings = exchange.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("replaced the identity token for 127.0.0.1:"), "{warnings:?}");
        assert!(warnings[0].contains(&format!("storing it in the identitytoken of \"r.example\" in {}", config.display())), "{warnings:?}");
        assert!(warnings[0].contains("docker login 127.0.0.1:"), "{warnings:?}");
        assert!(!warnings[0].contains("rotated-") && !warnings[0].contains("from-a-new-login"), "{warnings:?}");
        assert!(exchange.take_warnings().is_empty(), "taken once");
    }
}
