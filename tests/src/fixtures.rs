//! Fixtures on 127.0.0.1 for tests and the demo: a small HTTP server with routes, snapshot
//! archives, and a fake CometBFT RPC.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a route answers.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Arc<Vec<u8>>,
}

impl Reply {
    /// `200` with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            body: Arc::new(body.into()),
        }
    }

    /// `404`.
    pub fn not_found() -> Self {
        Self {
            status: 404,
            body: Arc::new(b"not found".to_vec()),
        }
    }
}

/// Answers a request for `path_and_query`; `None` never answers.
pub type Handler = Arc<dyn Fn(&str) -> Option<Reply> + Send + Sync>;

/// A tiny HTTP/1.1 server on 127.0.0.1 (one thread per connection). Stops when dropped.
pub struct HttpFixture {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HttpFixture {
    /// Answers every request with `200` and `body`.
    pub fn serving(body: &'static str) -> Self {
        Self::start(Arc::new(move |_| Some(Reply::ok(body))))
    }

    /// Accepts connections and never answers.
    pub fn silent() -> Self {
        Self::start(Arc::new(|_| None))
    }

    /// Serves `handler` on `127.0.0.1:0`.
    pub fn start(handler: Handler) -> Self {
        Self::start_on("127.0.0.1:0", handler)
    }

    /// Serves `handler` on `addr`.
    pub fn start_on(addr: &str, handler: Handler) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if thread_stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request);
                    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    match handler(&target) {
                        Some(reply) => {
                            let reason = if reply.status == 200 { "OK" } else { "Error" };
                            let head = format!(
                                "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                reply.status,
                                reply.body.len()
                            );
                            if conn
                                .write_all(head.as_bytes())
                                .and_then(|()| conn.write_all(&reply.body))
                                .is_err()
                            {
                                return;
                            }
                            // Close our side, then drain what the client still sends (an
                            // empty chunked body): closing with unread data resets the
                            // connection under the response.
                            let _ = conn.shutdown(std::net::Shutdown::Write);
                            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                            while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
                        }
                        None => while conn.read(&mut buf).is_ok_and(|n| n > 0) {},
                    }
                });
            }
        });
        Self { addr, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// Reproducible pseudo-random bytes (incompressible).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A random lower-case hex string of `len` digits.
pub fn random_hex(len: usize) -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    random_bytes(len / 2 + 1, seed ^ u64::from(std::process::id()))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..len]
        .to_owned()
}

/// An entry of a test archive.
pub enum Entry<'a> {
    /// A regular file with its content.
    File(&'a str, &'a [u8]),
    /// A directory.
    Dir(&'a str),
    /// A symlink to a target (written raw: hostile targets allowed).
    Symlink(&'a str, &'a str),
    /// A hardlink to another entry (written raw).
    Hardlink(&'a str, &'a str),
}

/// A gzipped tar of `entries`, names written raw so hostile archives can be built too.
pub fn tar_gz(entries: &[Entry<'_>]) -> Vec<u8> {
    use tar::{EntryType, Header};
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for entry in entries {
        let (name, kind, link, data): (&str, EntryType, Option<&str>, &[u8]) = match entry {
            Entry::File(name, data) => (name, EntryType::Regular, None, data),
            Entry::Dir(name) => (name, EntryType::Directory, None, &[]),
            Entry::Symlink(name, target) => (name, EntryType::Symlink, Some(target), &[]),
            Entry::Hardlink(name, target) => (name, EntryType::Link, Some(target), &[]),
        };
        let mut header = Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A snapshot server: `/{chain}/latest.txt` says `latest`, `/{chain}/{height}.tar.gz` serves
/// each archive given.
pub fn snapshot_server(chain_id: &str, latest: u64, archives: Vec<(u64, Vec<u8>)>) -> HttpFixture {
    let chain = chain_id.to_owned();
    let archives: Vec<(String, Arc<Vec<u8>>)> = archives
        .into_iter()
        .map(|(h, a)| (format!("/{chain}/{h}.tar.gz"), Arc::new(a)))
        .collect();
    HttpFixture::start(Arc::new(move |path| {
        if path == format!("/{chain}/latest.txt") {
            return Some(Reply::ok(format!("{latest}\n")));
        }
        Some(match archives.iter().find(|(p, _)| p == path) {
            Some((_, body)) => Reply {
                status: 200,
                body: body.clone(),
            },
            None => Reply::not_found(),
        })
    }))
}

/// A fake CometBFT RPC: `/status` with `node_id` and `latest` height, and
/// `/block?height=H` with a hash derived from `hash_seed` and H.
pub struct FakeRpc {
    /// The server.
    pub server: HttpFixture,
    /// Its node ID.
    pub node_id: String,
    /// Its latest height.
    pub latest: u64,
    hash_seed: String,
}

impl FakeRpc {
    /// A node with a random ID and hash seed (new every run).
    pub fn start(latest: u64) -> Self {
        Self::start_on("127.0.0.1:0", latest)
    }

    /// The same, on `addr`.
    pub fn start_on(addr: &str, latest: u64) -> Self {
        let node_id = random_hex(40);
        let hash_seed = random_hex(16);
        let (id, seed) = (node_id.clone(), hash_seed.clone());
        let server = HttpFixture::start_on(
            addr,
            Arc::new(move |path| {
                if path == "/status" {
                    let body = serde_json::json!({
                        "jsonrpc": "2.0", "id": -1,
                        "result": {
                            "node_info": { "id": id, "network": "test-chain" },
                            "sync_info": { "latest_block_height": latest.to_string() }
                        }
                    });
                    return Some(Reply::ok(body.to_string()));
                }
                if let Some(height) = path
                    .strip_prefix("/block?height=")
                    .and_then(|h| h.parse::<u64>().ok())
                {
                    let body = serde_json::json!({
                        "jsonrpc": "2.0", "id": -1,
                        "result": { "block_id": { "hash": Self::hash_of(&seed, height) } }
                    });
                    return Some(Reply::ok(body.to_string()));
                }
                Some(Reply::not_found())
            }),
        );
        Self {
            server,
            node_id,
            latest,
            hash_seed,
        }
    }

    /// The block hash this node reports for `height`.
    pub fn block_hash(&self, height: u64) -> String {
        Self::hash_of(&self.hash_seed, height)
    }

    fn hash_of(seed: &str, height: u64) -> String {
        use sha2::Digest;
        hex::encode_upper(sha2::Sha256::digest(format!("{seed}/{height}")))
    }
}
