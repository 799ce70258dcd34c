//! Blob uploads, made by rbuild rather than oci-client: oci-client does not
//! show the upload session's `OCI-Chunk-Min-Length`, and its chunked upload
//! neither honours it nor resumes a broken chunk.
//!
//! `POST /v2/<name>/blobs/uploads/` opens a session; the blob then goes up in
//! one `PUT <location>?digest=` (monolithic), or in `PATCH`es of
//! `Content-Range` chunks closed by an empty `PUT ?digest=` (chunked): chunked
//! when the registry asks for a minimum chunk length, or when the blob is
//! above [`CHUNKED_ABOVE`]. A chunk that fails in a way a retry may help is
//! sent again from where the registry says the upload stands (the `Range` of
//! `GET <location>`); when that cannot be had, the upload fails, and its
//! caller's retry opens a new session.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use futures_util::Stream;
use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::retry::{is_transient, transient_reason, ATTEMPTS, FIRST_BACKOFF};

/// Blobs above this go up in chunks even when the registry does not ask: a
/// broken connection then costs one chunk, not the whole layer sent again,
/// and no request lasts longer than a chunk takes, well within the timeouts
/// of the proxies in front of registries. Below it one `PUT` is one request
/// where chunks would be several, for a resend that costs little.
const CHUNKED_ABOVE: u64 = 64 << 20;
/// The chunk length rbuild chooses, the least when the registry asks for
/// less: a few seconds of upload, so a failure resends little.
const CHUNK: u64 = 8 << 20;
/// How much of a blob file goes into one piece of a request's body.
const READ_CHUNK: usize = 1 << 20;

/// The length of each chunk (the last may be shorter) for a blob of `size`
/// bytes when the registry asked for chunks of `min_length` at least; `None`
/// for one monolithic `PUT`.
pub(super) fn chunk_length(min_length: Option<u64>, size: u64) -> Option<u64> {
    match min_length {
        Some(min) => Some(min.max(CHUNK)),
        None if size > CHUNKED_ABOVE => Some(CHUNK),
        None => None,
    }
}

/// One blob to upload to one repository.
pub(super) struct Upload<'a> {
    pub http: &'a reqwest::Client,
    /// `scheme://host[:port]` of the registry's API.
    pub base_url: &'a str,
    pub repository: &'a str,
    /// What every request sends: a bearer token, a password, or nothing.
    pub auth: &'a RegistryAuth,
    pub path: &'a Path,
    pub digest: &'a str,
    pub size: u64,
}

impl Upload<'_> {
    /// Uploads the blob in a session of its own; `on_resume` hears of each
    /// chunk sent again (attempt, reason).
    pub(super) async fn run(&self, on_resume: &mut (dyn FnMut(u32, String) + Send)) -> Result<(), OciDistributionError> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base_url, self.repository);
        let response = self.send(self.request(Method::POST, &url).header(CONTENT_LENGTH, 0), StatusCode::ACCEPTED).await?;
        let min_length = response
            .headers()
            .get("OCI-Chunk-Min-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut location = location(&response)?;
        let Some(chunk) = chunk_length(min_length, self.size) else {
            return self.close(&location, 0, self.size).await;
        };
        let (mut offset, mut attempt, mut wait) = (0, 1, FIRST_BACKOFF);
        while offset < self.size {
            let length = chunk.min(self.size - offset);
            let range = format!("{offset}-{}", offset + length - 1);
            let request = self
                .request(Method::PATCH, location.as_str())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, range)
                .header(CONTENT_LENGTH, length)
                .body(self.body(offset, length)?);
            match self.send(request, StatusCode::ACCEPTED).await {
                Ok(response) => {
                    location = location_or(&response, location);
                    offset += length;
                }
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                    on_resume(attempt, transient_reason(&e));
                    tokio::time::sleep(wait).await;
                    (wait, attempt) = (wait * 2, attempt + 1);
                    (location, offset) = self.status(location).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.close(&location, offset, 0).await
    }

    /// `PUT <location>?digest=`, with the bytes from `offset` on (`length`
    /// of them: all for a monolithic upload, none to close a chunked one).
    async fn close(&self, location: &Url, offset: u64, length: u64) -> Result<(), OciDistributionError> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", self.digest);
        let request = self
            .request(Method::PUT, url.as_str())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, length)
            .body(self.body(offset, length)?);
        self.send(request, StatusCode::CREATED).await.map(|_| ())
    }

    /// Where the upload stands: the session's location, and the offset after
    /// the bytes the registry has (its `Range: 0-LAST`).
    async fn status(&self, location: Url) -> Result<(Url, u64), OciDistributionError> {
        let response = self.send(self.request(Method::GET, location.as_str()), StatusCode::NO_CONTENT).await?;
        let offset = response
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(received_up_to)
            .unwrap_or(0);
        Ok((location_or(&response, location), offset))
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let request = self.http.request(method, url);
        match self.auth {
            RegistryAuth::Anonymous => request,
            RegistryAuth::Basic(user, password) => request.basic_auth(user, Some(password)),
            RegistryAuth::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// Sends `request`; an answer other than `expected` is an error, as
    /// oci-client makes them (the registry's error envelope when it sent one).
    async fn send(&self, request: RequestBuilder, expected: StatusCode) -> Result<Response, OciDistributionError> {
        let response = request.send().await?;
        let status = response.status();
        if status == expected {
            return Ok(response);
        }
        let url = response.url().to_string();
        let body = response.bytes().await?;
        Err(match serde_json::from_slice::<OciEnvelope>(&body) {
            Ok(envelope) if status.is_client_error() && !envelope.errors.is_empty() => {
                OciDistributionError::RegistryError { envelope, url }
            }
            _ => OciDistributionError::ServerError {
                code: status.as_u16(),
                url,
                message: String::from_utf8_lossy(&body).into_owned(),
            },
        })
    }

    /// `length` bytes of the blob file from `offset`, read as they are sent.
    fn body(&self, offset: u64, length: u64) -> Result<reqwest::Body, OciDistributionError> {
        let mut file = File::open(self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(reqwest::Body::wrap_stream(file_stream(file.take(length))))
    }
}

/// The `Location` of an upload answer, resolved against the request's URL.
fn location(response: &Response) -> Result<Url, OciDistributionError> {
    let header = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        OciDistributionError::SpecViolationError(format!("the answer to {} names no Location", response.url()))
    })?;
    response.url().join(header).map_err(|e| OciDistributionError::UrlParseError(e.to_string()))
}

/// The `Location` of an answer, else `previous`.
fn location_or(response: &Response, previous: Url) -> Url {
    location(response).unwrap_or(previous)
}

/// The offset after the bytes a `Range: 0-LAST` (or `bytes=0-LAST`) says a
/// registry has. Distribution answers `0-0` for an empty upload too: taken
/// for nothing received, as a resume comes after a chunk of many bytes or none.
fn received_up_to(range: &str) -> Option<u64> {
    let (_, last) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    match last.trim().parse::<u64>().ok()? {
        0 => Some(0),
        last => Some(last + 1),
    }
}

/// A file as a request body, read a piece at a time.
fn file_stream<R: Read + Send + 'static>(reader: R) -> impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(reader, |mut reader| async move {
        let mut buffer = vec![0; READ_CHUNK];
        // A blocking read on a runtime thread: the store's files are local,
        // and an upload has nothing else to do meanwhile.
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(None);
        }
        buffer.truncate(read);
        Ok(Some((bytes::Bytes::from(buffer), reader)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_when_asked_or_large_and_never_below_the_minimum() {
        assert_eq!(chunk_length(None, 1 << 20), None);
        assert_eq!(chunk_length(None, CHUNKED_ABOVE), None);
        assert_eq!(chunk_length(None, CHUNKED_ABOVE + 1), Some(CHUNK));
        // Asked for: chunked whatever the size, at the registry's minimum when it is more.
        assert_eq!(chunk_length(Some(1024), 10), Some(CHUNK));
        assert_eq!(chunk_length(Some(CHUNK * 3), 1 << 20), Some(CHUNK * 3));
        assert_eq!(chunk_length(Some(0), CHUNKED_ABOVE * 2), Some(CHUNK));
    }

    /// One request a scripted registry saw: method, target, `Content-Range`, body length.
    type Seen = (String, String, String, usize);

    /// A registry that opens a session asking for chunks, fails the second `PATCH` with a
    /// 500, and says in its upload status how much it has.
    fn scripted_registry() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
        let recorded = seen.clone();
        std::thread::spawn(move || {
            let (mut received, mut patches) = (0usize, 0);
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace().map(str::to_string);
                let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
                let (mut length, mut range) = (0, String::new());
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let Some((name, value)) = header.trim_end().split_once(':') else { break };
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "content-range" => range = value.trim().to_string(),
                        _ => {}
                    }
                }
                std::io::copy(&mut reader.take(length as u64), &mut std::io::sink()).unwrap();
                recorded.lock().unwrap().push((method.clone(), target, range, length));
                let answer = match method.as_str() {
                    "POST" => "202 Accepted\r\nLocation: /up/1\r\nOCI-Chunk-Min-Length: 1024".to_string(),
                    "PATCH" => {
                        patches += 1;
                        if patches == 2 {
                            "500 Internal Server Error".to_string()
                        } else {
                            received += length;
                            format!("202 Accepted\r\nLocation: /up/1\r\nRange: 0-{}", received - 1)
                        }
                    }
                    "GET" => format!("204 No Content\r\nLocation: /up/1\r\nRange: 0-{}", received - 1),
                    _ => "201 Created".to_string(),
                };
                write!(&stream, "HTTP/1.1 {answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            }
        });
        (port, seen)
    }

    #[test]
    fn a_failed_chunk_resumes_where_the_registry_says() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (port, seen) = scripted_registry();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let size = CHUNK + 1000;
        std::fs::write(&path, vec![7u8; size as usize]).unwrap();
        let http = reqwest::Client::new();
        let base_url = format!("http://127.0.0.1:{port}");
        let upload = Upload {
            http: &http,
            base_url: &base_url,
            repository: "r",
            auth: &RegistryAuth::Anonymous,
            path: &path,
            digest: "sha256:abc",
            size,
        };
        let mut resumed = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(upload.run(&mut |attempt, reason| resumed.push((attempt, reason)))).unwrap();
        assert_eq!(resumed.len(), 1, "{resumed:?}");
        assert!(resumed[0].1.contains("HTTP 500"), "{resumed:?}");
        let seen = seen.lock().unwrap().clone();
        let steps: Vec<(&str, &str, &str, usize)> = seen.iter().map(|(m, t, r, l)| (m.as_str(), t.as_str(), r.as_str(), *l)).collect();
        let last = format!("{}-{}", CHUNK, size - 1);
        assert_eq!(
            steps,
            [
                ("POST", "/v2/r/blobs/uploads/", "", 0),
                ("PATCH", "/up/1", format!("0-{}", CHUNK - 1).as_str(), CHUNK as usize),
                ("PATCH", "/up/1", last.as_str(), 1000),
                ("GET", "/up/1", "", 0),
                ("PATCH", "/up/1", last.as_str(), 1000),
                ("PUT", "/up/1?digest=sha256%3Aabc", "", 0),
            ]
        );
    }

    #[test]
    fn ranges_say_where_to_resume() {
        assert_eq!(received_up_to("0-1023"), Some(1024));
        assert_eq!(received_up_to("bytes=0-0"), Some(0), "distribution's answer for nothing yet");
        assert_eq!(received_up_to("bytes=0-8388607"), Some(8 << 20));
        assert_eq!(received_up_to(" 0-99 "), Some(100));
        assert_eq!(received_up_to("nonsense"), None);
    }
}
