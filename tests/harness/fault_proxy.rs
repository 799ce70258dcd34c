//! A proxy on 127.0.0.1 between a client and a registry, for the push tests. [`FaultProxy::start`]
//! breaks blob uploads, for the retries: the first blob `PUT` gets a 500, the second is cut
//! off half-way through its body (the connection dropped). [`FaultProxy::asking_for_chunks`]
//! breaks nothing and adds `OCI-Chunk-Min-Length` to the answers that open an upload session.
//! Everything else passes through, and every request line is recorded with its
//! `Content-Length`. Every request goes on a connection of its own (`Connection: close`), so
//! each is seen.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

/// What the proxy does, and what it saw.
struct Shared {
    upstream: u16,
    /// Whether the first two blob `PUT`s are broken.
    faults: bool,
    /// The `OCI-Chunk-Min-Length` added to upload-session answers.
    chunk_min: Option<u64>,
    uploads: AtomicUsize,
    requests: Mutex<Vec<(String, usize)>>,
}

impl FaultProxy {
    /// A proxy that breaks uploads to the registry at `127.0.0.1:upstream`; it runs until the
    /// test process ends.
    pub fn start(upstream: u16) -> FaultProxy {
        FaultProxy::launch(Shared { upstream, faults: true, chunk_min: None, uploads: AtomicUsize::new(0), requests: Mutex::default() })
    }

    /// A proxy to the registry at `127.0.0.1:upstream` that asks for upload chunks of `min`
    /// bytes at least.
    pub fn asking_for_chunks(upstream: u16, min: u64) -> FaultProxy {
        FaultProxy::launch(Shared { upstream, faults: false, chunk_min: Some(min), uploads: AtomicUsize::new(0), requests: Mutex::default() })
    }

    fn launch(shared: Shared) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(shared);
        let serving = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = serving.clone();
                std::thread::spawn(move || serve(client, &shared));
            }
        });
        FaultProxy { port, shared }
    }

    /// Every request line that came through, with its `Content-Length` (0 when it had none).
    pub fn requests(&self) -> Vec<(String, usize)> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `127.0.0.1:PORT`, the registry part of references through the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many blob `PUT`s came through (the broken ones included).
    pub fn uploads(&self) -> usize {
        self.shared.uploads.load(Ordering::SeqCst)
    }
}

fn serve(mut client: TcpStream, shared: &Shared) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 8192];
    let body_start = loop {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_string();
    let rest = head[body_start..].to_vec();
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut rewritten = format!("{request_line}\r\n");
    let mut length = 0usize;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    shared.requests.lock().unwrap_or_else(|e| e.into_inner()).push((request_line.clone(), length));

    let is_upload = request_line.starts_with("PUT ") && request_line.contains("/blobs/uploads/");
    let counted = if is_upload { shared.uploads.fetch_add(1, Ordering::SeqCst) } else { usize::MAX };
    let fault = if shared.faults { counted } else { usize::MAX };
    let opens_session = request_line.starts_with("POST ") && request_line.contains("/blobs/uploads/");
    let added_header = shared.chunk_min.filter(|_| opens_session).map(|min| format!("OCI-Chunk-Min-Length: {min}\r\n"));
    if fault == 0 {
        // The request's body is read first: a client still writing it when the connection
        // closes sees a broken pipe, not the 500.
        let mut read = rest.len();
        while read < length {
            match client.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        let body = r#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#;
        let _ = write!(
            client,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", shared.upstream)) else { return };
    if server.write_all(rewritten.as_bytes()).is_err() || server.write_all(&rest).is_err() {
        return;
    }
    if fault == 1 {
        // Half the body, then both connections dropped.
        let mut sent = rest.len();
        while sent < length / 2 {
            match client.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = server.write_all(&buffer[..n]);
                    sent += n;
                }
            }
        }
        let _ = server.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else { return };
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
    });
    if let Some(header) = added_header {
        // The answer's head, with the header added after the status line.
        let mut head = Vec::new();
        let body_start = loop {
            match server.read(&mut buffer) {
                Ok(0) | Err(_) => break None,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(end);
            }
        };
        if let Some(status_end) = body_start.and_then(|_| head.windows(2).position(|w| w == b"\r\n")) {
            head.splice(status_end + 2..status_end + 2, header.into_bytes());
        }
        let _ = client.write_all(&head);
    }
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = forward.join();
}
