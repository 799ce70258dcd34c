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
//! sends as the bearer token.
//!
//! Access tokens are kept per repository for less than the 60 seconds every
//! registry token lasts at least (the distribution spec's minimum, and what
//! oci-client assumes of a token that does not say), and fetched again after
//! that, so a long pull never sends an expired one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http_auth::ChallengeParser;

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
    refresh_token: String,
    /// `scheme://host[:port]` of the registry.
    base_url: String,
    /// The registry's challenge, read once; `None` when it wants no auth.
    challenge: tokio::sync::OnceCell<Option<Challenge>>,
    /// Access tokens by repository, with when they were fetched.
    tokens: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
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
    /// The token server refused the identity token.
    Refused { realm: String, status: u16, detail: String },
    /// The token server's answer holds no token.
    BadAnswer { realm: String, reason: String },
}

impl TokenExchange {
    pub(super) fn new(refresh_token: String, base_url: String, user_agent: &str) -> Result<TokenExchange, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(30))
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(TokenExchange {
            http,
            refresh_token,
            base_url,
            challenge: tokio::sync::OnceCell::new(),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// An access token to pull `repository`: the last one while it is fresh,
    /// else a new one from the token server.
    pub(super) async fn access(&self, repository: &str) -> Result<Access, ExchangeError> {
        let challenge = self.challenge.get_or_try_init(|| self.read_challenge()).await?;
        let Some(challenge) = challenge else { return Ok(Access::Anonymous) };
        let mut tokens = self.tokens.lock().await;
        if let Some((token, fetched)) = tokens.get(repository) {
            if fetched.elapsed() < REUSE {
                return Ok(Access::Token { token: token.clone(), new: false });
            }
        }
        let fetched = Instant::now();
        let token = self.exchange(challenge, &format!("repository:{repository}:pull")).await?;
        tokens.insert(repository.to_string(), (token.clone(), fetched));
        Ok(Access::Token { token, new: true })
    }

    /// `GET /v2/`: a 401 names the realm; anything else means no auth.
    async fn read_challenge(&self) -> Result<Option<Challenge>, ExchangeError> {
        let response = self.http.get(format!("{}/v2/", self.base_url)).send().await.map_err(ExchangeError::Request)?;
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

    /// The refresh-token grant: a form POSTed to the realm.
    async fn exchange(&self, challenge: &Challenge, scope: &str) -> Result<String, ExchangeError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh_token.as_str()),
            ("service", challenge.service.as_str()),
            ("scope", scope),
            ("client_id", CLIENT_ID),
        ];
        let response = self.http.post(&challenge.realm).form(&form).send().await.map_err(ExchangeError::Request)?;
        let status = response.status();
        let body = response.text().await.map_err(ExchangeError::Request)?;
        if !status.is_success() {
            return Err(ExchangeError::Refused {
                realm: challenge.realm.clone(),
                status: status.as_u16(),
                detail: super::oci_errors::token_server_detail(&body),
            });
        }
        access_token_of(&body).map_err(|reason| ExchangeError::BadAnswer { realm: challenge.realm.clone(), reason })
    }
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

/// The token of a token server's JSON answer: `access_token`, or `token`
/// (the two mean the same; servers of the GET flow send both).
fn access_token_of(body: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    ["access_token", "token"]
        .iter()
        .find_map(|key| value.get(key).and_then(|v| v.as_str()).filter(|t| !t.is_empty()))
        .map(str::to_string)
        .ok_or_else(|| "no access_token in its answer".to_string())
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
        assert_eq!(access_token_of(r#"{"access_token":"a","expires_in":300}"#).unwrap(), "a");
        assert_eq!(access_token_of(r#"{"token":"t"}"#).unwrap(), "t");
        assert!(access_token_of(r#"{"access_token":""}"#).unwrap_err().contains("no access_token"));
        assert!(access_token_of("<html>").unwrap_err().contains("not JSON"));
    }
}
