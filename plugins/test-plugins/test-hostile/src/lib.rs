//! Tries what a hostile plugin would, one `attack` per task, and reports what it could
//! reach as its output (the sandbox must make every probe come back empty-handed):
//!
//! - `read-outside` reads `/etc/passwd` (no preopen holds it);
//! - `symlink` reads `/work/link/passwd` through a link to `/etc` planted in the grant;
//! - `dotdot` climbs out of the granted `/work` with `..`;
//! - `env` lists the environment;
//! - `sockets` opens a TCP connection to `127.0.0.1:{port}`, binds a UDP socket and
//!   resolves `localhost` through wasi:sockets (the plugin declares no network need, and
//!   the host grants sockets to nobody);
//! - `recursion` recurses until the stack is exhausted (a trap);
//! - `trap-in-validate` panics in `validate` (at plan time);
//! - `leak-in-validate` keeps 96 MiB more on every `validate` call of one instance, and
//!   says on stderr how many calls the instance has served;
//! - `refuse-when-reused` refuses in `validate` on an instance that validated before;
//! - `slow-validate` sleeps `ms` milliseconds in `validate`;
//! - `codec-flood` opens host-side decoders (`planrt:task@0.3.0`) without closing any,
//!   until the host stops it;
//! - `leftovers` counts the bytes an earlier instance left in a zero-initialized static
//!   (the host reuses memory slots: each instance must start from the component's own
//!   image), then fills it for the next one to find.

use planrt_plugin_sdk::codec::{DecodeReader, Format};
use planrt_plugin_sdk::{Context, DirMode, DirNeed, Info, Needs, Task, TaskError, export_task};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// What to try.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum Attack {
    ReadOutside,
    Symlink,
    Dotdot,
    Env,
    Sockets,
    Recursion,
    TrapInValidate,
    LeakInValidate,
    RefuseWhenReused,
    SlowValidate,
    CodecFlood,
    Leftovers,
}

/// Whether this instance's `validate` ran before (`refuse-when-reused`).
static VALIDATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What `leak-in-validate` holds on to, across the calls of one instance.
static LEAKED: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// What `leftovers` inspects and marks: zero in the component's image, so any other byte
/// here was written by an earlier instance.
static SCRATCH: std::sync::Mutex<[u8; 256 * 1024]> = std::sync::Mutex::new([0; 256 * 1024]);

/// The params.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    attack: Attack,
    /// Where `sockets` connects on 127.0.0.1.
    #[serde(default)]
    port: u16,
    /// How long `slow-validate` sleeps.
    #[serde(default)]
    ms: u64,
}

/// What a read attempt got: the bytes read, or the error.
fn try_read(path: &str) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => json!({ "path": path, "read": bytes.len() }),
        Err(e) => json!({ "path": path, "error": e.to_string() }),
    }
}

/// What each socket call got: `ok`, or the error code's WIT name.
#[cfg(target_os = "wasi")]
fn try_sockets(port: u16) -> Value {
    use wasip2::sockets::instance_network::instance_network;
    use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasip2::sockets::{ip_name_lookup, tcp_create_socket, udp_create_socket};

    use wasip2::sockets::network::ErrorCode;

    fn outcome<T>(result: Result<T, ErrorCode>) -> Value {
        match result {
            Ok(_) => json!("ok"),
            Err(e) => json!({ "error": e.name() }),
        }
    }
    let network = instance_network();
    let local = |port| {
        IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port,
            address: (127, 0, 0, 1),
        })
    };
    let tcp = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).and_then(|socket| {
        socket.start_connect(&network, local(port))?;
        socket.subscribe().block();
        socket.finish_connect().map(drop)
    });
    let udp = udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).and_then(|socket| {
        socket.start_bind(&network, local(0))?;
        socket.subscribe().block();
        socket.finish_bind()
    });
    let lookup = ip_name_lookup::resolve_addresses(&network, "localhost").and_then(|stream| {
        stream.subscribe().block();
        stream.resolve_next_address()
    });
    json!({ "tcp": outcome(tcp), "udp": outcome(udp), "lookup": outcome(lookup) })
}

#[cfg(not(target_os = "wasi"))]
fn try_sockets(_port: u16) -> Value {
    json!({ "error": "wasi:sockets exists only inside the sandbox" })
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1) + frame[depth as usize % 16]
}

struct Hostile;

impl Task for Hostile {
    type Params = Params;
    type Output = Value;

    fn info() -> Info {
        Info {
            needs: Needs {
                dirs: vec![DirNeed {
                    guest_path: "/work".into(),
                    mode: DirMode::Ro,
                }],
                network: false,
            },
            default_timeout_ms: Some(30_000),
            ..Info::new("test-hostile", "0.1.0", "Probes the sandbox's walls")
        }
    }

    fn validate(params: &Params) -> Result<(), String> {
        match params.attack {
            Attack::TrapInValidate => panic!("test-hostile panics in validate on purpose"),
            Attack::LeakInValidate => {
                let mut leaked = LEAKED.lock().unwrap_or_else(|e| e.into_inner());
                leaked.push(vec![1; 96 << 20]);
                eprintln!("validate call {} of this instance", leaked.len());
                Ok(())
            }
            Attack::RefuseWhenReused => {
                if VALIDATED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    return Err("this instance validated before".into());
                }
                Ok(())
            }
            Attack::SlowValidate => {
                std::thread::sleep(std::time::Duration::from_millis(params.ms));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn run(_context: Context, params: Params) -> Result<Value, TaskError> {
        Ok(match params.attack {
            Attack::ReadOutside => try_read("/etc/passwd"),
            // Through the granted dir, so the host itself must refuse to follow it.
            Attack::Symlink => try_read("/work/link/passwd"),
            Attack::Dotdot => try_read("/work/../../../../etc/passwd"),
            Attack::Env => json!({ "vars": std::env::vars().collect::<Vec<_>>() }),
            Attack::Sockets => try_sockets(params.port),
            Attack::Recursion => json!({ "depth": recurse(0) }),
            Attack::CodecFlood => {
                // Host-side decoders, never dropped: the host must stop this at its cap.
                let mut held = Vec::new();
                for _ in 0..1000 {
                    held.push(DecodeReader::new(std::io::empty(), Format::Gzip));
                }
                json!({ "decoders": held.len() })
            }
            Attack::Leftovers => {
                let mut scratch = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
                let left = scratch.iter().filter(|&&byte| byte != 0).count();
                scratch.fill(0xa5);
                json!({ "left": left })
            }
            Attack::TrapInValidate => unreachable!("validate refused it"),
            Attack::LeakInValidate | Attack::RefuseWhenReused | Attack::SlowValidate => json!({}),
        })
    }
}

export_task!(Hostile);
