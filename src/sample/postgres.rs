//! A throwaway PostgreSQL server for tests, benchmarks and the one-machine cluster example:
//! Debian's `postgresql` binaries (`initdb`, `pg_ctl`), a cluster in a temporary directory,
//! listening on a free port of 127.0.0.1 with `trust` authentication, stopped and deleted on
//! drop. As root (where `initdb` refuses to run) everything runs as the `postgres` user.
//!
//! Nothing here is used by clerk itself in production: a real installation points
//! `[cluster] database` at a PostgreSQL its operators run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of the throwaway server, said with what to do.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL server binaries not found (looked for {0}): install Debian's `postgresql` \
         package (scripts/install-deps.sh does)"
    )]
    NotInstalled(String),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("i/o error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running throwaway PostgreSQL cluster.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

/// The directory holding `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/*/bin`, else
/// the one on `PATH`.
pub fn bin_dir() -> Result<PathBuf, PostgresError> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or_else(|| PostgresError::NotInstalled("/usr/lib/postgresql/*/bin, PATH".into()))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after).
fn free_port() -> Result<u16, PostgresError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| PostgresError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}

impl Postgres {
    /// Creates and starts a cluster (about 2 s).
    pub fn start() -> Result<Postgres, PostgresError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("clerk-pg-")
            .tempdir()
            .map_err(|source| PostgresError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        if is_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            if !chown.map(|s| s.success()).unwrap_or(false) {
                return Err(PostgresError::Command {
                    what: "chown postgres".into(),
                    detail: "is there a `postgres` user? (Debian's postgresql package makes it)"
                        .into(),
                });
            }
        }
        let data = dir.path().join("data");
        let mut pg = Postgres {
            bin,
            dir,
            port: free_port()?,
            running: false,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        )?;
        pg.start_server()?;
        Ok(pg)
    }

    /// One server for the whole process (tests share it; each uses its own database). A
    /// watchdog stops and deletes it once this process has exited, however it exits.
    pub fn shared() -> Result<&'static Postgres, PostgresError> {
        static SHARED: std::sync::OnceLock<Result<Postgres, String>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let pg = Postgres::start().map_err(|e| e.to_string())?;
                pg.watchdog().map_err(|e| e.to_string())?;
                Ok(pg)
            })
            .as_ref()
            .map_err(|e| PostgresError::Command {
                what: "starting the shared PostgreSQL".into(),
                detail: e.clone(),
            })
    }

    /// Starts a process that waits for this one to exit, then stops the server and deletes
    /// its directory (for servers held in statics, which are never dropped).
    fn watchdog(&self) -> Result<(), PostgresError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let as_user = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {as_user}'{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.data().display(),
            dir = self.dir.path().display(),
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| PostgresError::Io {
                path: "setsid sh".into(),
                source,
            })?;
        Ok(())
    }

    /// A new, empty database with a unique name; returns its URL.
    pub fn fresh_database(&self, prefix: &str) -> Result<String, PostgresError> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.create_database(&format!("{prefix}_{}_{n}", std::process::id()))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The cluster's directory (data in `data/`, server log in `server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?connect_timeout=5",
            self.port
        )
    }

    /// Creates a database (no error if it exists) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, PostgresError> {
        let out = self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if !err.contains("already exists") {
                return Err(PostgresError::Command {
                    what: format!("CREATE DATABASE {name}"),
                    detail: err.trim().to_owned(),
                });
            }
        }
        Ok(self.url(name))
    }

    /// Runs one SQL statement with `psql` (as an operator would); returns its output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<std::process::Output, PostgresError> {
        let psql = self.bin.join("psql");
        let psql = if psql.is_file() {
            psql
        } else {
            PathBuf::from("psql")
        };
        Command::new(psql)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-c", sql])
            .output()
            .map_err(|source| PostgresError::Io {
                path: "psql".into(),
                source,
            })
    }

    /// Stops the server (fast shutdown: clients are disconnected, committed data kept).
    pub fn stop(&mut self) -> Result<(), PostgresError> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        )?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same port (after [`Postgres::stop`]).
    pub fn start_server(&mut self) -> Result<(), PostgresError> {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        self.running = true;
        // pg_ctl -w waits for the socket; make sure TCP answers too.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(PostgresError::Command {
            what: "pg_ctl start".into(),
            detail: format!("nothing listens on 127.0.0.1:{}", self.port),
        })
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), PostgresError> {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PostgresError::Io {
                path: exe.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        Err(PostgresError::Command {
            what: format!("{tool} {}", args.join(" ")),
            detail: format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
            ),
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}
