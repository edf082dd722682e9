//! The clap definitions of the command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::browser::PoolConfig;

/// clerk: back-office agent for e-commerce service teams.
#[derive(Debug, Parser)]
#[command(name = "clerk", version, about, long_about = None)]
pub struct Cli {
    /// Data directory: config, sessions, screenshots/, journal, index.
    #[arg(long, global = true, env = "CLERK_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// Config file (default: clerk.toml in the data directory).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Who is running clerk (default: the OS user).
    #[arg(long = "as", global = true, env = "CLERK_USER")]
    pub user: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the sample seller center, look up 20 orders read-only, draft one refund.
    Demo(DemoArgs),
    /// Validate playbooks without a browser.
    Check {
        /// Playbook files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run one or more playbooks, once or for every row of an inputs file.
    Run(RunArgs),
    /// Write a channel's session by running a login playbook (secrets from the environment).
    Login {
        channel: String,
        #[arg(long)]
        playbook: PathBuf,
    },
    /// Runs recorded in the evidence store.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Verify screenshots, the hash chain and the index (or an exported bundle).
    Verify(VerifyArgs),
    /// Export a self-contained bundle for auditors.
    Export {
        /// Export one run (its records, screenshots and playbook text).
        #[arg(long, conflicts_with = "case", required_unless_present = "case")]
        run: Option<String>,
        /// Export every run and approval of one case reference.
        #[arg(long)]
        case: Option<String>,
        /// A new or empty directory to write the bundle into (manifest.json, journal
        /// excerpt, screenshots/, SHA256SUMS for `sha256sum -c`).
        #[arg(long)]
        out: PathBuf,
        /// Also write `archive.wacz`: the recorded server responses as a WACZ 1.2 web
        /// archive (opens in ReplayWeb.page; `wacz validate` checks it).
        #[arg(long)]
        wacz: bool,
    },
    /// Rebuild the index from the journal and the screenshot files.
    Reindex,
    /// The cluster database named by `[cluster] database` (PostgreSQL).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The transparency log's signing key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Sign a checkpoint of the journal now (after checking it extends the last one).
    Checkpoint {
        #[arg(long)]
        json: bool,
        /// Instead: keep the witness cosignatures on this cosigned checkpoint (a witness's
        /// `--out` file carried back from an air-gapped witness).
        #[arg(long)]
        add_cosigned: Option<PathBuf>,
    },
    /// Witness a clerk log from elsewhere: cosign its checkpoints only after checking each
    /// extends the last one cosigned; refuse and alarm on a fork.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Approval requests created by drafts.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Approve a pending draft (as a reviewer of its channel, not its requester).
    Approve {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a pending draft, saying why.
    Reject {
        id: String,
        #[arg(long, required = true)]
        note: String,
    },
    /// Execute an approved draft: fill again, check the draft hash, submit exactly once.
    Submit {
        id: String,
        /// Playbook file (default: playbooks/NAME.yaml, else the embedded one).
        #[arg(long)]
        playbook: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Schedules: playbooks that run by themselves (fired by `clerk serve`).
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Run the daemon: scheduler, run queue, browser pool and the API on 127.0.0.1.
    Serve {
        /// API port (default: `[serve] port` in the config, else 7878; 0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
    },
    /// The daemon, the pool, the queue per channel, and what is paused.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The run queue: list, show, retry or drop jobs; resume a channel's queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// The weekly numbers: runs, evidence, approvals, blocked requests (from the journal).
    Stats(super::stats::StatsArgs),
    /// Re-execute a recorded read-only run (same playbook text, inputs, claims) and report
    /// what differs: outcome, fields, case verdict, screenshot hashes. Exit 0 the same, 1
    /// different.
    /// Auto-approval policies: their state and the figures they rest on; enable one again
    /// after a rejection suspended it.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Draft the compensating action of a submitted run (its playbook's `undo:`), linked to
    /// it in the journal; the draft goes through approval like any write.
    Rollback {
        run: String,
        /// An input of the compensating playbook besides those `undo:` maps, NAME=VALUE.
        #[arg(long = "input", short = 'i')]
        input: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    Replay {
        run: String,
        /// Replay with this version of the run's playbook instead of the recorded text.
        #[arg(long)]
        playbook: Option<PathBuf>,
        /// Answer the browser from the run's recorded responses (its WARC records) instead
        /// of the seller center: no session needed, nothing sent.
        #[arg(long)]
        offline: bool,
        #[arg(long)]
        json: bool,
    },
    /// Replay, offline, every recorded read-only run of PLAYBOOK in the export bundles
    /// under --samples with this version of the playbook; exit 1 if any case changed.
    Test {
        playbook: PathBuf,
        /// A directory of replay samples: export bundles (`clerk export --run RUN --out
        /// DIR/NAME`), or one bundle.
        #[arg(long)]
        samples: PathBuf,
        /// Also write the results as JUnit XML to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Emergency pause: no new run, in-flight runs stop before their next step, every write
    /// of every open browser is denied (global, or one channel with --channel).
    Pause(super::pause::PauseArgs),
    /// Lift an emergency pause (global, or one channel with --channel).
    Resume(super::pause::PauseArgs),
    /// Users of the reviewer console (roles are in the config's `[[user]]` list).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// End every console session of a user, in every browser ("log out everywhere"); their
    /// API tokens stay (`clerk user token NAME --revoke` removes those, and ends the
    /// sessions too).
    Logout { name: String },
    /// Set a user's console password (asked on the terminal without echo, or read from
    /// standard input when it is not a terminal; never an argument), and their role when
    /// the config does not name one.
    Add {
        name: String,
        /// operator, reviewer, auditor or admin (a role the config gives wins).
        #[arg(long, value_parser = ["operator", "reviewer", "auditor", "admin"])]
        role: Option<String>,
    },
    /// Make an API token for a user (printed once; only its SHA-256 is stored). The CLI
    /// sends it from CLERK_TOKEN, the file CLERK_TOKEN_FILE names, or ~/.config/clerk/token,
    /// and the daemon then acts as that user.
    Token {
        name: String,
        /// Remove every token of the user instead.
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Jobs in the queue (all, or one state: queued, claimed, done, dead, dropped).
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One job, with its attempts, lease, last error, outcome.
    Show {
        job: u64,
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead-lettered job again, with a fresh count of attempts.
    Retry { job: u64 },
    /// Drop a queued or dead-lettered job for good.
    Drop { job: u64 },
    /// Let a channel's queue run again (after re-authorizing an expired session).
    Resume { channel: String },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule (validates the playbook, the trigger and the inputs first).
    Add(ScheduleAddArgs),
    /// List schedules: trigger, time zone, next firing, paused, last firing.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one schedule.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule from firing until it is resumed.
    Pause {
        name: String,
        /// Why (recorded).
        #[arg(long, required = true)]
        reason: String,
    },
    /// Let a paused schedule fire again, from the next slot on.
    Resume { name: String },
    /// Remove a schedule (its records stay; the name may be used again).
    Remove { name: String },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("trigger").required(true).args(["cron", "every"])))]
pub struct ScheduleAddArgs {
    /// Unique name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Playbook file, or the name of a playbook (playbooks/NAME.yaml or an embedded one).
    #[arg(long)]
    pub playbook: String,
    /// Cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first, evaluated in --tz.
    #[arg(long)]
    pub cron: Option<String>,
    /// Fixed interval: 90s, 30m, 2h, 1d (at least 1m; counted from the Unix epoch in UTC).
    #[arg(long)]
    pub every: Option<String>,
    /// IANA time zone of the cron expression (default UTC).
    #[arg(long, conflicts_with = "every")]
    pub tz: Option<String>,
    /// One run per row at each firing: .csv with a header row, or .jsonl (read at each firing).
    #[arg(long, conflicts_with = "inputs_from_url")]
    pub inputs: Option<PathBuf>,
    /// Fetch the rows from this URL at each firing (.csv or .jsonl content).
    #[arg(long)]
    pub inputs_from_url: Option<String>,
    /// Input whose value becomes each run's case reference.
    #[arg(long)]
    pub case_from: Option<String>,
    /// Runs of one firing at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the sample seller center (0 picks a free one).
    #[arg(long, default_value_t = 8931)]
    pub port: u16,
    /// Orders to look up.
    #[arg(long, default_value_t = 20)]
    pub orders: usize,
    /// Runs (pages) at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[arg(long)]
    pub json: bool,
}

/// How runs share browsers (see the README, "Browsers and isolation").
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// `run`: a fresh browser context per run; `batch`: consecutive successful read-only
    /// runs of the same channel, playbook, operator and session reuse one (warm page and
    /// cache, shared site cookies).
    #[arg(long, default_value = "batch", value_parser = ["run", "batch"])]
    pub isolation: String,
    /// Chromium processes at most (runs beyond that share them, one context each).
    #[arg(long, default_value_t = 1)]
    pub browsers: usize,
    /// A Chromium is replaced after this many runs.
    #[arg(long, default_value_t = 200)]
    pub recycle_after: u32,
    /// With batch isolation, a kept browser context serves at most this many runs before a
    /// new one (with the channel's session) takes over: memory stays bounded in long batches.
    #[arg(long, default_value_t = 50)]
    pub context_runs: u32,
}

impl PoolArgs {
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            browsers: self.browsers.max(1),
            recycle_after: self.recycle_after.max(1),
            context_runs: self.context_runs.max(1),
            isolation: self.isolation.parse().unwrap_or_default(),
            ..PoolConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Playbook files.
    #[arg(required = true)]
    pub playbooks: Vec<PathBuf>,
    /// An input value, NAME=VALUE (repeatable).
    #[arg(long = "input", short = 'i')]
    pub input: Vec<String>,
    /// One run per row: .csv with a header row, or .jsonl. Columns `claim.NAME` are case
    /// claims.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// A case claim, NAME=VALUE (repeatable): a fact the customer gave, compared with the
    /// page by the playbook's `match:` rules before anything is written.
    #[arg(long = "claim")]
    pub claim: Vec<String>,
    /// Runs (pages) at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Service case or ticket the evidence is for.
    #[arg(long)]
    pub case: Option<String>,
    /// Print machine-readable results.
    #[arg(long)]
    pub json: bool,
    /// Record each run as a replay sample: every response it loads (scripts, style sheets
    /// and images included) is kept, so `clerk replay --offline` and `clerk test` can
    /// replay it without the seller center.
    #[arg(long)]
    pub sample: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs.
    List {
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        case: Option<String>,
        /// RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: steps, fields, screenshots, blocked requests, approvals.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify one run (its records and screenshots).
    #[arg(long, conflicts_with_all = ["case", "all", "bundle"])]
    pub run: Option<String>,
    /// Verify every run of one case reference.
    #[arg(long, conflicts_with_all = ["all", "bundle"])]
    pub case: Option<String>,
    /// Verify everything (the default).
    #[arg(long, conflicts_with = "bundle")]
    pub all: bool,
    /// Verify an exported bundle offline.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Check C2SP tlog-proof files (a bundle's `proofs/*.tlog-proof`) offline: the record
    /// is intact and in a checkpoint signed by `--key` (and cosigned by `--quorum` of the
    /// `--witness` keys).
    #[arg(long, num_args = 1.., conflicts_with_all = ["run", "case", "all", "bundle", "consistency"])]
    pub proof: Vec<PathBuf>,
    /// Check that checkpoint NEW extends checkpoint OLD (signed-note files), with a
    /// consistency proof from this data directory's journal.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with_all = ["run", "case", "all", "bundle"])]
    pub consistency: Vec<PathBuf>,
    /// The log's public key (`clerk key show`), repeatable for rotated keys. Default for
    /// --consistency: this data directory's `tlog/keys`.
    #[arg(long)]
    pub key: Vec<String>,
    /// A witness's public key (repeatable).
    #[arg(long)]
    pub witness: Vec<String>,
    /// How many of the --witness keys must have cosigned.
    #[arg(long, default_value_t = 0)]
    pub quorum: usize,
    /// With --proof: the file (a screenshot) the record must name by its SHA-256.
    #[arg(long, requires = "proof")]
    pub file: Option<PathBuf>,
    /// Check the journal and the files only, leaving the index out on purpose (while a
    /// process other than `clerk serve` holds it open). Said in the report.
    #[arg(long, conflicts_with = "bundle")]
    pub no_index: bool,
    /// Check that every field run RUN extracted appears in the server responses it
    /// recorded (the channel's `record_responses`); names each one that does not.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["run", "case", "all", "bundle", "proof", "consistency"])]
    pub server_match: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the schema migrations this clerk needs (once per upgrade, from any node; nodes
    /// migrating at once take turns). The password comes from PGPASSWORD.
    Migrate,
    /// Print the database's schema version and the one this clerk needs (exit 1 if they
    /// differ).
    Status,
}

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Create the witness's key and state directory; prints its public key (put it in the
    /// log's `[log] witnesses` and give it to auditors).
    Init {
        /// The witness's state directory (its key, what it cosigned, forks it saw).
        #[arg(long)]
        dir: PathBuf,
        /// The witness's name, e.g. `audit.example.com/w1` (no spaces or `+`).
        #[arg(long)]
        name: String,
    },
    /// Print the witness's public key.
    Key {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Fetch the log's latest checkpoint and a consistency proof, check, cosign and hand the
    /// cosignature back. Exit 0: cosigned or nothing new; 3: FORK or a checkpoint the log
    /// did not sign (both kept under the state directory); 1: the log could not be reached.
    Run {
        #[arg(long)]
        dir: PathBuf,
        /// The log's public key (`clerk key show` on the clerk host), repeatable after a
        /// rotation.
        #[arg(long = "log-key", required = true)]
        log_key: Vec<String>,
        /// The clerk daemon, e.g. `http://127.0.0.1:7878` (token from --token or CLERK_TOKEN).
        #[arg(long, conflicts_with = "from", required_unless_present = "from")]
        url: Option<String>,
        #[arg(long, env = "CLERK_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Air-gapped: a copy of the clerk data directory (its `tlog/checkpoint` and
        /// journal) instead of the daemon.
        #[arg(long)]
        from: Option<PathBuf>,
        /// With --from: where to write the cosigned checkpoint to carry back
        /// (`clerk checkpoint --add-cosigned FILE` on the clerk host).
        #[arg(long, requires = "from")]
        out: Option<PathBuf>,
        /// Keep running, checking this often (e.g. `60s`); default: once.
        #[arg(long)]
        every: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the log's public key (creating the key at first use) and where the key is.
    Show,
    /// Replace the log key with a new one; old checkpoints keep verifying with the old
    /// public key, which stays in `tlog/keys`. Give witnesses and auditors the new key.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests.
    List {
        #[arg(long)]
        pending: bool,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one approval request: values, screenshot, what will be submitted where.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Every policy: suspended or not, earned or not, the reviewed drafts it rests on.
    List {
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Enable a suspended policy again (the channel's owner).
    Enable {
        name: String,
        #[arg(long)]
        channel: String,
    },
}
