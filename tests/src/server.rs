//! A real `planrt serve` on 127.0.0.1 (an ephemeral port), and a small HTTP client for it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

use crate::Scratch;

/// A running `planrt serve`, killed on drop.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
    token: Option<String>,
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Scratch {
    /// Starts `planrt serve --listen 127.0.0.1:0 ARGS` and waits until it listens.
    pub fn serve(&self, args: &[&str]) -> Server {
        self.serve_with(args, |_| {})
    }

    /// As [`Scratch::serve`], with the command adjusted first (environment, …).
    pub fn serve_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut command = self.command(&all);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("planrt serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = found.send(addr.parse::<SocketAddr>().ok());
                }
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match address.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(addr)) => addr,
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "planrt serve did not start ({other:?}, {status:?}):\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            child: Some(child),
            addr,
            log,
            agent,
            token: None,
        }
    }
}

impl Server {
    /// Sends `Authorization: Bearer TOKEN` from now on.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request with an optional raw body and extra headers.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let result = match body {
            Some(body) => self.agent.run(
                builder
                    .header("content-type", "application/json")
                    .body(body.to_owned())
                    .unwrap(),
            ),
            None => self.agent.run(builder.body(()).unwrap()),
        };
        let mut response = result
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}\nserver log:\n{}", self.log()));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Response {
            status,
            body,
            headers,
        }
    }

    /// Sends `head` (request line and headers, without the blank line) and as much of
    /// `body` as the server reads, over a plain TCP connection, and returns the response's
    /// status: for a server that answers before reading the whole body (413).
    pub fn raw_status(&self, head: &str, body: &[u8]) -> u16 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let request = format!("{head}\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        stream.write_all(request.as_bytes()).unwrap();
        // The server may answer and close before it reads everything: a broken pipe here
        // is expected.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        text.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[])
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(&body.to_string()), &[])
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None, &[])
    }

    /// Polls `GET /v0/tasks/{id}` until `ready` holds (panics after 60 s).
    pub fn wait_task(&self, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(&format!("/v0/tasks/{id}"), ready)
    }

    /// Polls `GET path` until it answers 200 with a document `ready` holds of, and
    /// returns the document (panics after 60 s, with the last answer and the log).
    pub fn wait_for(&self, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let last = std::cell::RefCell::new(None::<Response>);
        let answered = || {
            let response = self.get(path);
            let done = response.status == 200 && ready(&response.json());
            *last.borrow_mut() = Some(response);
            done
        };
        // `ready` runs before `said` is ever asked: there is a last answer.
        let said = || {
            let last = last.borrow();
            let response = last.as_ref().expect("asked after an answer");
            let (status, body) = (response.status, &response.body);
            format!("last answer {status} {body}\nserver log:\n{}", self.log())
        };
        crate::wait_until(
            &format!("GET {path}"),
            Duration::from_secs(60),
            answered,
            said,
        );
        last.into_inner().expect("answered").json()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = child.wait().unwrap().code().unwrap_or(-1);
        // Let the reader thread drain the last lines.
        std::thread::sleep(Duration::from_millis(50));
        (code, self.log())
    }

    /// Kills the server with SIGKILL (no chance to record anything).
    pub fn kill_9(mut self) -> String {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
