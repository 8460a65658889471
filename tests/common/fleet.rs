//! Fleet-mode fixtures: a real `redis-server` and the test-fixture
//! rate-limit service (`tests/rls`, built by `make`), each on 127.0.0.1, each
//! killable and restartable on the same port mid-test.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::envoy::{env_or_crate_path, kill, spawn_tied_to_process, SIGKILL};

const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;

/// `$REDIS_SERVER`, else `redis-server` on the PATH (`make test` installs it).
pub fn redis_bin() -> PathBuf {
    match std::env::var_os("REDIS_SERVER") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("redis-server"),
    }
}

/// `$IDP_RL_RLS_FIXTURE`, else `target/rls-fixture/release/rls-fixture`.
pub fn rls_bin() -> PathBuf {
    env_or_crate_path(
        "IDP_RL_RLS_FIXTURE",
        "target/rls-fixture/release/rls-fixture",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn temp_dir(what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("idp-rl-{what}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} not listening on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        unsafe { kill(c.id() as i32, SIGKILL) };
        let _ = c.wait();
    }
}

/// A `redis-server` with no persistence.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: temp_dir("redis"),
            child: None,
        };
        r.restart();
        r
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        stop(&mut self.child);
        let log = self.dir.join("redis.log");
        let mut cmd = Command::new(redis_bin());
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("redis log"))
            .stderr(Stdio::null());
        let mut child = spawn_tied_to_process(cmd).unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): `make test` installs redis-server, or set REDIS_SERVER",
                redis_bin().display()
            )
        });
        wait_listening(self.port, &mut child, "redis-server", &log);
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// One command over RESP; the reply as text: a bulk or simple string,
    /// an integer, or an array's items joined by newlines.
    pub fn command(&self, args: &[&str]) -> String {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).expect("write redis");
        let mut r = BufReader::new(s);
        fn line(r: &mut impl BufRead) -> String {
            let mut l = String::new();
            r.read_line(&mut l).expect("read redis");
            l.trim_end().to_string()
        }
        fn value(r: &mut BufReader<TcpStream>) -> String {
            let head = line(r);
            let (kind, rest) = head.split_at(1);
            match kind {
                "+" | ":" | "-" => rest.to_string(),
                "$" => {
                    let n: i64 = rest.parse().expect("bulk length");
                    if n < 0 {
                        return String::new();
                    }
                    let mut buf = vec![0u8; n as usize + 2];
                    r.read_exact(&mut buf).expect("bulk");
                    String::from_utf8_lossy(&buf[..n as usize]).into_owned()
                }
                "*" => {
                    let n: i64 = rest.parse().expect("array length");
                    (0..n.max(0))
                        .map(|_| value(r))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
                _ => panic!("unexpected redis reply {head:?}"),
            }
        }
        value(&mut r)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The test-fixture rate-limit service over `redis`, with `config_yaml`
/// (an envoyproxy/ratelimit config, as `rls::generate` writes it).
pub struct Rls {
    pub port: u16,
    dir: PathBuf,
    redis_port: u16,
    child: Option<Child>,
}

impl Rls {
    pub fn start(config_yaml: &str, redis_port: u16) -> Rls {
        let dir = temp_dir("rls");
        fs::write(dir.join("config.yaml"), config_yaml).expect("write config.yaml");
        let mut r = Rls {
            port: free_port(),
            dir,
            redis_port,
            child: None,
        };
        r.restart();
        r
    }

    /// Starts it (again) on the same port.
    pub fn restart(&mut self) {
        stop(&mut self.child);
        let bin = rls_bin();
        assert!(
            bin.exists(),
            "no {} (built by `make e2e`: cargo build --release --manifest-path tests/rls/Cargo.toml \
             --target-dir target/rls-fixture)",
            bin.display()
        );
        let log = self.dir.join("rls.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(self.dir.join("config.yaml"))
            .args(["--redis", &format!("127.0.0.1:{}", self.redis_port)])
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("rls log"));
        let mut child = spawn_tied_to_process(cmd).expect("spawn rls-fixture");
        wait_listening(self.port, &mut child, "rls-fixture", &log);
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(self.dir.join("rls.log")).unwrap_or_default()
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing answers, so
    /// calls time out rather than fail fast.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            unsafe { kill(c.id() as i32, SIGSTOP) };
        }
    }

    /// Lets a frozen service run again (SIGCONT).
    pub fn thaw(&self) {
        if let Some(c) = &self.child {
            unsafe { kill(c.id() as i32, SIGCONT) };
        }
    }
}

impl Drop for Rls {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
