//! Turning oci-client's errors into [`RegistryError`]s that say what went
//! wrong for the user: the registry could not be reached, the image or tag
//! does not exist, credentials are missing or refused, content was corrupt.

use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope, OciErrorCode};

use super::oauth::{first_line, token_server_detail, ExchangeError};
use super::error::Action;
use super::RegistryError;
use crate::digest::Digest;

/// What an error message needs besides the error itself.
pub(super) struct ErrorContext {
    pub action: Action,
    pub registry: String,
    pub reference: String,
    pub scheme: &'static str,
    /// What credentials were sent, if any ("the credentials of alice").
    pub sent: Option<String>,
    /// Where credentials were looked for.
    pub looked: String,
}

impl ErrorContext {
    fn auth_failure(&self, detail: String) -> RegistryError {
        match &self.sent {
            None => RegistryError::AuthRequired {
                action: self.action,
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                looked: self.looked.clone(),
            },
            Some(sent) => RegistryError::AuthRefused {
                action: self.action,
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                sent: format!("{sent} ({})", self.looked),
                detail: if detail.is_empty() { String::new() } else { format!(": {detail}") },
            },
        }
    }

    fn not_found(&self, reason: String) -> RegistryError {
        RegistryError::NotFound { reference: self.reference.clone(), reason }
    }

    fn protocol(&self, reason: String) -> RegistryError {
        RegistryError::Protocol {
            action: self.action,
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            reason,
        }
    }
}

pub(super) fn describe_oci_error(error: OciDistributionError, context: &ErrorContext) -> RegistryError {
    match error {
        OciDistributionError::RequestError(e) => describe_request_error(&e, context),
        OciDistributionError::UnauthorizedError { .. } => context.auth_failure(String::new()),
        // The token server's answer to the realm request.
        OciDistributionError::AuthenticationFailure(reason) => context.auth_failure(token_server_detail(&reason)),
        OciDistributionError::RegistryError { envelope, .. } => describe_envelope(&envelope, context),
        OciDistributionError::ImageManifestNotFoundError(reason) => context.not_found(reason),
        // The body is usually the distribution spec's error envelope: its
        // message is what the registry has to say.
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 => context.auth_failure(token_server_detail(&message)),
            403 => context.auth_failure(token_server_detail(&message)),
            404 => context.not_found(format!("the registry answered 404 {}", token_server_detail(&message))),
            _ => context.protocol(format!("the registry answered HTTP {code}: {}", token_server_detail(&message))),
        },
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            mismatch(context, "content the registry served", &expected, &actual)
        }
        OciDistributionError::IoError(e) => describe_stream_error(e, context),
        other => context.protocol(other.to_string()),
    }
}

/// An error from a blob stream: a digest mismatch oci-client found, or the
/// connection failing half-way.
pub(super) fn describe_stream_error(error: std::io::Error, context: &ErrorContext) -> RegistryError {
    if let Some(DigestError::VerificationError { expected, actual }) =
        error.get_ref().and_then(|inner| inner.downcast_ref::<DigestError>())
    {
        return mismatch(context, "a blob the registry served", expected, actual);
    }
    if let Some(request) = error.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()) {
        return describe_request_error(request, context);
    }
    context.protocol(format!("the download broke off: {}", chain(&error)))
}

/// Why no access token could be had for an identity token.
pub(super) fn describe_exchange_error(error: ExchangeError, context: &ErrorContext) -> RegistryError {
    match error {
        ExchangeError::Request(e) => describe_request_error(&e, context),
        ExchangeError::NotBearer(challenge) => {
            let asked = if challenge.is_empty() {
                "it answers 401 without naming a token server".to_string()
            } else {
                format!("it asks for {}, not for a bearer token", first_line(&challenge))
            };
            context.auth_failure(format!(
                "{asked}, and an identity token is only good at a token server; log in with a user name and password"
            ))
        }
        ExchangeError::Refused { realm, status, detail, post_refused } => {
            let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
            let to = match post_refused {
                None => String::new(),
                Some(post) => format!(" to the GET (it answered the OAuth2 POST with HTTP {post})"),
            };
            context.auth_failure(format!("its token server {realm} answered HTTP {status}{to}{detail}"))
        }
        ExchangeError::BadAnswer { realm, reason } => context.protocol(format!("its token server {realm} answered: {reason}")),
    }
}

pub(super) fn describe_request_error(error: &reqwest::Error, context: &ErrorContext) -> RegistryError {
    // reqwest's own message repeats the URL the error already names; its
    // causes say what happened (connection refused, a TLS failure).
    let reason = match std::error::Error::source(error) {
        Some(cause) if error.url().is_some() => chain(cause),
        _ => chain(error),
    };
    let lower = reason.to_ascii_lowercase();
    let hint = if context.scheme == "https"
        && (lower.contains("tls") || lower.contains("certificate") || lower.contains("handshake") || lower.contains("invalid http version"))
    {
        format!(
            "; if {} serves plain HTTP, name it with --insecure-registry {} (or RBUILD_INSECURE_REGISTRIES)",
            context.registry, context.registry
        )
    } else {
        String::new()
    };
    let url = error
        .url()
        .map(|u| u.to_string())
        .unwrap_or_else(|| format!("{}://{}/v2/", context.scheme, context.registry));
    if error.is_connect() || error.is_timeout() || error.is_request() {
        RegistryError::Unreachable { registry: context.registry.clone(), url, reason, hint }
    } else {
        context.protocol(format!("{reason}{hint}"))
    }
}

fn describe_envelope(envelope: &OciEnvelope, context: &ErrorContext) -> RegistryError {
    let message = envelope
        .errors
        .iter()
        .map(|e| if e.message.is_empty() { format!("{:?}", e.code) } else { e.message.clone() })
        .collect::<Vec<_>>()
        .join("; ");
    let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
    if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
        return context.auth_failure(message);
    }
    if codes.iter().any(|c| {
        matches!(
            c,
            OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound | OciErrorCode::BlobUnknown
        )
    }) {
        let reason = if codes.iter().any(|c| matches!(c, OciErrorCode::NameUnknown)) {
            format!("the repository does not exist in {} ({message})", context.registry)
        } else {
            format!("{message} (no such tag or digest in {})", context.registry)
        };
        return context.not_found(reason);
    }
    if codes.iter().any(|c| matches!(c, OciErrorCode::Toomanyrequests)) {
        return context.protocol(format!("the registry limits pulls: {message}"));
    }
    context.protocol(message)
}

fn mismatch(context: &ErrorContext, what: &str, expected: &str, actual: &str) -> RegistryError {
    match (expected.parse::<Digest>(), actual.parse::<Digest>()) {
        (Ok(expected), Ok(actual)) => RegistryError::DigestMismatch {
            reference: context.reference.clone(),
            what: what.to_string(),
            expected,
            actual,
        },
        _ => context.protocol(format!("{what} has digest {actual}, expected {expected}")),
    }
}

/// An error with its sources: reqwest's own message rarely says more than
/// "error sending request"; the cause (connection refused) is further down.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_server_answers_say_why() {
        assert_eq!(token_server_detail(r#"{"details":"incorrect username or password"}"#), "incorrect username or password");
        assert_eq!(
            token_server_detail(r#"{"error":"invalid_grant","error_description":"unknown refresh token"}"#),
            "unknown refresh token"
        );
        assert_eq!(token_server_detail(r#"{"error":"invalid_grant"}"#), "invalid_grant");
        assert_eq!(token_server_detail(r#"{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}"#), "no");
        assert_eq!(token_server_detail("Forbidden\nmore"), "Forbidden");
        assert_eq!(token_server_detail(r#"{"other":1}"#), r#"{"other":1}"#);
    }
}
