//! Shared test fixtures: the sample seller center on a free port, a temp data directory
//! with a channel config and a live session, and an engine driving real headless Chromium.

pub mod http;
pub mod proxy;
pub mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::browser::LaunchOptions;
use clerk::channel::Config;
use clerk::evidence::{Event, Record, Store};
use clerk::playbook::Playbook;
use clerk::runner::{Engine, RunReport, RunRequest};
use clerk::sample::{SampleCenter, SampleOptions};

/// One test's world.
pub struct World {
    pub dir: tempfile::TempDir,
    pub center: SampleCenter,
    pub engine: Engine,
}

impl World {
    /// Sample seller center on a free port, demo channel config, session for `ops`.
    pub async fn new() -> World {
        World::with_config(|c| c).await
    }

    /// Like [`World::new`], with the demo config text passed through `edit` first.
    pub async fn with_config(edit: impl FnOnce(String) -> String) -> World {
        let center = SampleCenter::start(SampleOptions {
            port: 0,
            secret: None,
        })
        .await
        .expect("sample seller center starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("clerk.toml");
        std::fs::write(
            &config_path,
            edit(clerk::sample::demo_config(center.port(), "ops")),
        )
        .unwrap();
        let config = Config::load(&config_path).unwrap();
        let session = center.storage_state("ops", Duration::from_secs(3600));
        session
            .save(&config.channel("sample").unwrap().session_path(dir.path()))
            .unwrap();
        let store = Store::open(dir.path()).expect("store opens");
        let launch = LaunchOptions::detect().expect("chromium is installed");
        let engine = Engine::new(dir.path().to_owned(), config, store, launch);
        World {
            dir,
            center,
            engine,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a playbook with inputs as `ops`.
    pub async fn run(&self, playbook: &Arc<Playbook>, inputs: &[(&str, &str)]) -> RunReport {
        self.run_as(playbook, inputs, "ops", None).await
    }

    pub async fn run_as(
        &self,
        playbook: &Arc<Playbook>,
        inputs: &[(&str, &str)],
        operator: &str,
        approval: Option<&str>,
    ) -> RunReport {
        self.request(playbook, inputs, operator, None, &[], approval)
            .await
    }

    /// One run through the engine, every part of the request given.
    async fn request(
        &self,
        playbook: &Arc<Playbook>,
        inputs: &[(&str, &str)],
        operator: &str,
        case_ref: Option<&str>,
        claims: &[(&str, &str)],
        approval: Option<&str>,
    ) -> RunReport {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        self.engine
            .run(RunRequest {
                playbook: playbook.clone(),
                inputs: pairs(inputs),
                operator: operator.to_owned(),
                case_ref: case_ref.map(str::to_owned),
                batch_id: None,
                approval: approval.map(str::to_owned),
                claims: pairs(claims),
                replay_of: None,
                rollback_of: None,
                offline: None,
                sample: false,
            })
            .await
            .expect("engine runs")
    }

    /// The `clerk` binary on this world's data directory as `user` (no inherited
    /// `CLERK_DATA_DIR` / `CLERK_USER`).
    pub fn clerk(&self, user: &str, args: &[&str]) -> std::process::Output {
        Command::new(clerk_bin())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--as", user])
            .args(args)
            .env_remove("CLERK_DATA_DIR")
            .env_remove("CLERK_USER")
            .output()
            .expect("the clerk binary runs")
    }

    /// Runs a playbook as `ops` for case `CASE-MATCH` with case claims (and an approval,
    /// for a submit).
    pub async fn run_claims(
        &self,
        playbook: &Arc<Playbook>,
        inputs: &[(&str, &str)],
        claims: &[(&str, &str)],
        approval: Option<&str>,
    ) -> RunReport {
        self.request(
            playbook,
            inputs,
            "ops",
            Some("CASE-MATCH"),
            claims,
            approval,
        )
        .await
    }

    /// Runs the shipped playbook `name` for one order as `ops`, requires it to end ok, and
    /// returns its report and run id.
    pub async fn run_ok(&self, name: &str, order_id: &str) -> (RunReport, String) {
        let r = self.run(&playbook(name), &[("order_id", order_id)]).await;
        assert_eq!(
            r.status,
            clerk::runner::RunStatus::Ok,
            "{name} {order_id}: {:?}",
            r.error
        );
        let run_id = r.run_id.clone().expect("a run id");
        (r, run_id)
    }

    /// All records of a run.
    pub fn records(&self, run_id: &str) -> Vec<Record> {
        self.engine.store.run_records(run_id).expect("records")
    }

    /// Blocked request URLs of a run, from the journal.
    pub fn blocked_urls(&self, run_id: &str) -> Vec<(String, String)> {
        self.records(run_id)
            .into_iter()
            .filter_map(|r| match r.event {
                Event::RequestBlocked { method, url, .. } => Some((method, url)),
                _ => None,
            })
            .collect()
    }

    /// A browser with the channel's guard and session, for tests that drive a tab directly.
    /// Also returns the channel's base URL.
    pub async fn browser(&self) -> (clerk::browser::Browser, clerk::browser::Tab, url::Url) {
        let channel = self.engine.config.channel("sample").unwrap().clone();
        let policy = clerk::browser::Policy {
            allowed_origins: channel.allowed_origins.clone(),
            read_only_exceptions: vec![],
            websocket_allow: vec![],
            service_workers: false,
            pause: self.engine.pause.switch("sample"),
            record: Default::default(),
            offline: None,
        };
        let session = channel.load_session(self.data_dir()).unwrap();
        let (browser, tab) =
            clerk::browser::Browser::launch(&self.engine.launch, policy, Some(&session))
                .await
                .unwrap();
        (browser, tab, channel.base_url)
    }

    /// Blocked requests of a run as (method, url, target kind), from the journal.
    pub fn blocked(&self, run_id: &str) -> Vec<(String, String, String)> {
        self.records(run_id)
            .into_iter()
            .filter_map(|r| match r.event {
                Event::RequestBlocked {
                    method,
                    url,
                    target,
                    ..
                } => Some((method, url, target)),
                _ => None,
            })
            .collect()
    }

    /// Writes a playbook file into the data dir and loads it against the config.
    pub fn playbook_from(&self, name: &str, yaml: &str) -> Arc<Playbook> {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        Arc::new(
            clerk::playbook::load(&path, Some(&self.engine.config))
                .unwrap_or_else(|d| panic!("{d}")),
        )
    }
}

/// An embedded playbook.
pub fn playbook(name: &str) -> Arc<Playbook> {
    Arc::new(clerk::playbook::embedded::embedded(name, None).unwrap_or_else(|d| panic!("{d}")))
}

/// The clerk binary built for this test run.
pub fn clerk_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clerk"))
}

/// Input map helper.
pub fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// PIDs of live processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // Zombies are already dead; only count live processes.
                if stat.split_whitespace().nth(2) == Some("Z") {
                    continue;
                }
                if String::from_utf8_lossy(&cmd).contains(needle) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// A `clerk serve` process on a data directory.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn spawn(data_dir: &Path) -> Daemon {
        Daemon::spawn_in(data_dir, None, &[])
    }

    /// Started from `cwd` (as a service manager starts it, e.g. from `/`), with `env`.
    pub fn spawn_in(data_dir: &Path, cwd: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(clerk_bin());
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--port", "0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // CLERK_TEST_SERVE_LOGS=DIR keeps each daemon's log there (for a failing test).
        if let Some(dir) = std::env::var_os("CLERK_TEST_SERVE_LOGS") {
            let name = format!(
                "serve-{}.log",
                data_dir
                    .file_name()
                    .map_or("x".into(), |n| n.to_string_lossy())
            );
            if let Ok(f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join(name))
            {
                cmd.stderr(f);
            }
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
        }
    }

    /// Waits for its serve.json: (port, token).
    pub async fn ready(&self, data_dir: &Path) -> (u16, String) {
        let t = Instant::now();
        loop {
            if let Some(i) = clerk::instance::discover(data_dir) {
                if i.pid == self.child.id() {
                    return (i.addr.port(), i.token);
                }
            }
            assert!(t.elapsed() < Duration::from_secs(60), "daemon never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}
