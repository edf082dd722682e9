//! Named users of the reviewer console: who they are and what their role lets them do come
//! from the config (`[[user]] name = "carol" role = "reviewer"`); their passwords are
//! argon2id hashes (PHC strings, a random salt each) in `<data>/users/passwords.json`,
//! mode 0600, written by `clerk user add NAME`.
//!
//! Engine code: it knows no front end. It writes only `users/passwords.json` (credentials,
//! not evidence), through a temporary file renamed over it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::channel::Config;
pub use crate::channel::Role;

/// Shortest password `add` accepts.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Errors about users and their passwords.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user name `{0}` is not allowed: 1 to 64 ASCII letters, digits, `.`, `_`, `-` or `@`, starting with a letter or digit")]
    BadName(String),
    #[error("`{0}` has no role: give one (`clerk user add {0} --role reviewer`) or add `[[user]] name = \"{0}\" role = \"reviewer\"` to clerk.toml")]
    NotInConfig(String),
    #[error("the config makes `{name}` {config}; remove the `[[user]]` entry or leave --role out (not {given})")]
    RoleConflict {
        name: String,
        config: Role,
        given: Role,
    },
    #[error("a password needs at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("wrong user or password")]
    BadCredentials,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl UserError {
    /// The CLI's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            UserError::NotInConfig(_)
            | UserError::TooShort
            | UserError::RoleConflict { .. }
            | UserError::BadName(_) => 2,
            UserError::BadCredentials => 3,
            _ => 1,
        }
    }
}

/// What a user asks the daemon to do, through the API or the console alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Look: every GET, verify, the case bundle.
    Read,
    /// Queue runs (lookups and drafts).
    Run,
    /// Queue the submit of an approved draft.
    Submit,
    /// Approve or reject.
    Decide,
    /// The emergency pause and its resume.
    Pause,
    /// Retry or drop jobs, resume a channel's queue.
    Queue,
    /// Add, pause, resume or remove schedules.
    Schedule,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Run => "queue runs",
            Permission::Submit => "queue submits",
            Permission::Decide => "decide approvals",
            Permission::Pause => "pause or resume",
            Permission::Queue => "change the queue",
            Permission::Schedule => "change schedules",
        }
    }
}

/// Who may do what: the one table behind the API and the console (README, "Roles"). A role
/// only narrows: the engine's own checks still apply (a decision needs the channel's
/// reviewer list and four eyes, a run an operator of the channel).
///
/// | | operator | reviewer | auditor | admin |
/// | --- | --- | --- | --- | --- |
/// | read, verify, export | yes | yes | yes | yes |
/// | run, submit, queue, schedules | yes | no | no | yes |
/// | decide | no | yes | no | yes |
/// | pause, resume | yes | yes | no | yes |
pub fn permits(role: Role, p: Permission) -> bool {
    use Permission::*;
    match p {
        Read => true,
        Run | Submit | Queue | Schedule => matches!(role, Role::Operator | Role::Admin),
        Decide => matches!(role, Role::Reviewer | Role::Admin),
        Pause => matches!(role, Role::Operator | Role::Reviewer | Role::Admin),
    }
}

/// Whether a role may decide approvals ([`permits`]).
pub fn may_decide(role: Role) -> bool {
    permits(role, Permission::Decide)
}

/// True when this installation has named users (`[[user]]` in the config, or users added
/// with `clerk user add`): then deciding an approval needs the reviewer's own credential
/// (a personal API token or a console session), never a name given on the command line.
pub fn declared(data_dir: &Path, config: &Config) -> bool {
    !config.users.is_empty() || load(data_dir).map(|u| !u.is_empty()).unwrap_or(false)
}

/// Whether a role may pause and resume ([`permits`]).
pub fn may_pause(role: Role) -> bool {
    permits(role, Permission::Pause)
}

/// `<data>/users/passwords.json`.
pub fn passwords_path(data_dir: &Path) -> PathBuf {
    data_dir.join("users").join("passwords.json")
}

/// An argon2id hash (PHC string) of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// True when `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// `n` random bytes from the OS, hex-encoded (session ids, CSRF tokens).
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The password hashes by user name (missing file: none).
pub fn load(data_dir: &Path) -> Result<BTreeMap<String, String>, UserError> {
    let path = passwords_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UserError::Read {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(UserError::Read {
            path,
            message: e.to_string(),
        }),
    }
}

/// Sets (or replaces) the password of `name`, who must have a role (config or
/// `clerk user add --role`).
pub fn set_password(
    data_dir: &Path,
    config: &Config,
    name: &str,
    password: &str,
) -> Result<Role, UserError> {
    add_user(data_dir, config, name, password, None)
}

/// Where roles given with `clerk user add NAME --role R` are kept.
pub fn roles_path(data_dir: &Path) -> PathBuf {
    data_dir.join("users").join("roles.json")
}

fn load_roles(data_dir: &Path) -> BTreeMap<String, Role> {
    std::fs::read(roles_path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// A user's role: the config's `[[user]]` entry, else the one `clerk user add --role` set.
pub fn role_of(data_dir: &Path, config: &Config, name: &str) -> Option<Role> {
    config
        .role_of(name)
        .or_else(|| load_roles(data_dir).get(name).copied())
}

/// Sets the password of `name` and, when `role` is given, their role (kept in
/// `users/roles.json`). A role the config already gives the user cannot be changed here:
/// the config wins, so a different `role` is refused.
pub fn add_user(
    data_dir: &Path,
    config: &Config,
    name: &str,
    password: &str,
    role: Option<Role>,
) -> Result<Role, UserError> {
    if !crate::display::is_safe_name(name) {
        return Err(UserError::BadName(
            crate::display::visible(name).into_owned(),
        ));
    }
    let role = match (config.role_of(name), role) {
        (Some(c), Some(r)) if c != r => {
            return Err(UserError::RoleConflict {
                name: name.to_owned(),
                config: c,
                given: r,
            })
        }
        (Some(c), _) => c,
        (None, Some(r)) => r,
        (None, None) => load_roles(data_dir)
            .get(name)
            .copied()
            .ok_or_else(|| UserError::NotInConfig(name.to_owned()))?,
    };
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UserError::BadName(name.to_owned()));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::TooShort);
    }
    let mut all = load(data_dir)?;
    all.insert(name.to_owned(), hash_password(password)?);
    save(data_dir, &all)?;
    if config.role_of(name).is_none() {
        let mut roles = load_roles(data_dir);
        roles.insert(name.to_owned(), role);
        let text = serde_json::to_vec_pretty(&roles).map_err(|e| UserError::Write {
            path: roles_path(data_dir),
            source: e.into(),
        })?;
        write_private(data_dir, "roles.json", &text)?;
    }
    Ok(role)
}

fn save(data_dir: &Path, all: &BTreeMap<String, String>) -> Result<(), UserError> {
    let text = serde_json::to_vec_pretty(all).map_err(|e| UserError::Write {
        path: passwords_path(data_dir),
        source: e.into(),
    })?;
    write_private(data_dir, "passwords.json", &text)
}

/// Writes `<data>/users/<name>` (mode 0600, in a 0700 folder) through a temporary file
/// renamed over it, fsync'd.
pub fn write_private(data_dir: &Path, name: &str, text: &[u8]) -> Result<(), UserError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = data_dir.join("users");
    let path = dir.join(name);
    let write_err = |source| UserError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(write_err)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(write_err)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err)?;
    file.write_all(text).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, &path).map_err(write_err)?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err)?;
    Ok(())
}

/// Checks a login: the user must be in the config and the password must match the stored
/// hash. Every failure is the same [`UserError::BadCredentials`] (no hint which part was
/// wrong); a user without a password cannot log in.
pub fn authenticate(
    data_dir: &Path,
    config: &Config,
    name: &str,
    password: &str,
) -> Result<Role, UserError> {
    let all = load(data_dir)?;
    let role = role_of(data_dir, config, name);
    match (role, all.get(name)) {
        (Some(role), Some(hash)) if verify_password(hash, password) => Ok(role),
        (_, hash) => {
            // Spend the same work on unknown users, so timing does not tell them apart.
            if hash.is_none() {
                let _ = hash_password(password);
            }
            Err(UserError::BadCredentials)
        }
    }
}

/// Where the API tokens' hashes are kept.
pub fn tokens_path(data_dir: &Path) -> PathBuf {
    data_dir.join("users").join("tokens.json")
}

/// One API token, by the SHA-256 of its value (the value itself is shown once and never
/// stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenEntry {
    pub user: String,
    pub sha256: String,
    pub created_at: String,
}

/// The stored tokens (missing file: none).
pub fn load_tokens(data_dir: &Path) -> Result<Vec<TokenEntry>, UserError> {
    let path = tokens_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UserError::Read {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(UserError::Read {
            path,
            message: e.to_string(),
        }),
    }
}

fn save_tokens(data_dir: &Path, all: &[TokenEntry]) -> Result<(), UserError> {
    let text = serde_json::to_vec_pretty(all).map_err(|e| UserError::Write {
        path: tokens_path(data_dir),
        source: e.into(),
    })?;
    write_private(data_dir, "tokens.json", &text)
}

/// The daemon's proof that it knows a token (it stores the token's SHA-256, which only
/// the data directory's owner can read): HMAC-SHA-256 keyed by that hash over the nonce.
/// A CLI that must find the daemon at a configured port checks it before sending the token
/// itself, so a listener that took the port cannot collect tokens.
pub fn token_proof(stored_sha256: &str, nonce: &str) -> String {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(stored_sha256.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"clerk serve proof\n");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// How a CLI names its token to the daemon without revealing it: the SHA-256 of the
/// token's stored hash.
pub fn token_id(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token_hash(token).as_bytes()))
}

/// The stored hash of `token`, as the daemon keeps it.
pub fn stored_hash(token: &str) -> String {
    token_hash(token)
}

impl TokenBook {
    /// The proof for the stored token whose id ([`token_id`]) is `id`, if there is one.
    pub fn prove(&self, id: &str, nonce: &str) -> Option<String> {
        let tokens = load_tokens(&self.data_dir).ok()?;
        use sha2::Digest as _;
        tokens
            .iter()
            .find(|t| {
                constant_eq(
                    hex::encode(sha2::Sha256::digest(t.sha256.as_bytes())).as_bytes(),
                    id.as_bytes(),
                )
            })
            .map(|t| token_proof(&t.sha256, nonce))
    }
}

fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Makes a new API token for `name` (a `[[user]]` of the config) and returns its value,
/// `clerk_` and 64 hex digits (32 random bytes). Only its SHA-256 is stored.
pub fn create_token(
    data_dir: &Path,
    config: &Config,
    name: &str,
    created_at: &str,
) -> Result<String, UserError> {
    role_of(data_dir, config, name).ok_or_else(|| UserError::NotInConfig(name.to_owned()))?;
    let token = format!("clerk_{}", random_token(32));
    let mut all = load_tokens(data_dir)?;
    all.push(TokenEntry {
        user: name.to_owned(),
        sha256: token_hash(&token),
        created_at: created_at.to_owned(),
    });
    save_tokens(data_dir, &all)?;
    Ok(token)
}

/// Removes every token of `name` and ends their console sessions (a revocation is the
/// answer to a leaked credential); returns how many tokens there were.
pub fn revoke_tokens(data_dir: &Path, name: &str) -> Result<usize, UserError> {
    let mut all = load_tokens(data_dir)?;
    let before = all.len();
    all.retain(|t| t.user != name);
    save_tokens(data_dir, &all)?;
    end_sessions(data_dir, name)?;
    Ok(before - all.len())
}

/// `<data>/users/generations.json`: per user, a counter every "log out everywhere" raises.
pub fn generations_path(data_dir: &Path) -> PathBuf {
    data_dir.join("users").join("generations.json")
}

fn load_generations(data_dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read(generations_path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Ends every console session of `name`, wherever it was opened ("log out everywhere"):
/// their credential stamp changes, so no session made before is accepted again.
pub fn end_sessions(data_dir: &Path, name: &str) -> Result<(), UserError> {
    let mut g = load_generations(data_dir);
    *g.entry(name.to_owned()).or_default() += 1;
    let text = serde_json::to_vec_pretty(&g).map_err(|e| UserError::Read {
        path: generations_path(data_dir),
        message: e.to_string(),
    })?;
    write_private(data_dir, "generations.json", &text)
}

/// What a console session is bound to: the SHA-256 of the user's password hash and their
/// session generation. A new password, a revoked token or "log out everywhere" changes it,
/// and a removed user has none: every session made before then is refused.
pub fn credential_stamp(data_dir: &Path, config: &Config, name: &str) -> Option<String> {
    role_of(data_dir, config, name)?;
    let hash = load(data_dir).ok()?.get(name)?.clone();
    let generation = load_generations(data_dir).get(name).copied().unwrap_or(0);
    use sha2::Digest as _;
    Some(hex::encode(sha2::Sha256::digest(
        format!("{hash}\n{generation}").as_bytes(),
    )))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A file's modification time and length.
type FileStamp = (std::time::SystemTime, u64);

/// The tokens file as last read, read again whenever it changed on disk (so `clerk user
/// token` and `--revoke` take effect in a running daemon at once).
pub struct TokenBook {
    data_dir: PathBuf,
    cache: std::sync::Mutex<(Option<FileStamp>, Vec<TokenEntry>)>,
}

impl TokenBook {
    pub fn new(data_dir: &Path) -> TokenBook {
        TokenBook {
            data_dir: data_dir.to_owned(),
            cache: std::sync::Mutex::new((None, Vec::new())),
        }
    }

    /// Whose token this is, with their role, if it is a stored token of a user the config
    /// still has.
    pub fn user_of(&self, config: &Config, token: &str) -> Option<(String, Role)> {
        let stamp = std::fs::metadata(tokens_path(&self.data_dir))
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut cache = self.cache.lock().ok()?;
        if cache.0 != stamp || stamp.is_none() {
            cache.1 = load_tokens(&self.data_dir).unwrap_or_else(|e| {
                tracing::error!("cannot read the API tokens: {e}");
                Vec::new()
            });
            cache.0 = stamp;
        }
        let want = token_hash(token);
        let user = cache
            .1
            .iter()
            .find(|t| constant_eq(t.sha256.as_bytes(), want.as_bytes()))?
            .user
            .clone();
        let role = role_of(&self.data_dir, config, &user)?;
        Some((user, role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(users: &str) -> Config {
        Config::parse(Path::new("clerk.toml"), users).unwrap()
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "correct horsE"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn set_and_authenticate_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let c = config("[[user]]\nname = \"carol\"\nrole = \"reviewer\"\n");
        assert!(matches!(
            set_password(dir.path(), &c, "mallory", "long enough pw"),
            Err(UserError::NotInConfig(_))
        ));
        assert!(matches!(
            set_password(dir.path(), &c, "carol", "short"),
            Err(UserError::TooShort)
        ));
        assert_eq!(
            set_password(dir.path(), &c, "carol", "long enough pw").unwrap(),
            Role::Reviewer
        );
        let mode = std::fs::metadata(passwords_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(passwords_path(dir.path())).unwrap();
        assert!(!text.contains("long enough pw"));
        assert_eq!(
            authenticate(dir.path(), &c, "carol", "long enough pw").unwrap(),
            Role::Reviewer
        );
        assert!(authenticate(dir.path(), &c, "carol", "wrong password").is_err());
        assert!(authenticate(dir.path(), &c, "dave", "long enough pw").is_err());
    }

    #[test]
    fn tokens_are_stored_hashed_found_and_revoked() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let c = config("[[user]]\nname = \"carol\"\nrole = \"reviewer\"\n");
        assert!(matches!(
            create_token(dir.path(), &c, "mallory", "t"),
            Err(UserError::NotInConfig(_))
        ));
        let book = TokenBook::new(dir.path());
        let t = create_token(dir.path(), &c, "carol", "t").unwrap();
        assert!(t.starts_with("clerk_") && t.len() == 6 + 64, "{t}");
        let text = std::fs::read_to_string(tokens_path(dir.path())).unwrap();
        assert!(!text.contains(&t[6..]), "a token stored in clear");
        let mode = std::fs::metadata(tokens_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(book.user_of(&c, &t), Some(("carol".into(), Role::Reviewer)));
        assert_eq!(book.user_of(&c, &format!("{t}x")), None);
        assert_eq!(book.user_of(&c, "clerk_00"), None);
        // A user dropped from the config loses their tokens' power.
        assert_eq!(book.user_of(&config(""), &t), None);
        assert_eq!(revoke_tokens(dir.path(), "carol").unwrap(), 1);
        assert_eq!(book.user_of(&c, &t), None, "the revocation is seen at once");
    }

    #[test]
    fn roles_from_user_add_and_the_config_which_wins() {
        let dir = tempfile::tempdir().unwrap();
        let c = config("[[user]]\nname = \"carol\"\nrole = \"reviewer\"\n");
        assert!(matches!(
            add_user(dir.path(), &c, "dave", "long enough pw", None),
            Err(UserError::NotInConfig(_))
        ));
        assert_eq!(
            add_user(
                dir.path(),
                &c,
                "dave",
                "long enough pw",
                Some(Role::Auditor)
            )
            .unwrap(),
            Role::Auditor
        );
        assert_eq!(role_of(dir.path(), &c, "dave"), Some(Role::Auditor));
        assert_eq!(
            authenticate(dir.path(), &c, "dave", "long enough pw").unwrap(),
            Role::Auditor
        );
        // A new password keeps the role.
        add_user(dir.path(), &c, "dave", "another long pw", None).unwrap();
        assert_eq!(role_of(dir.path(), &c, "dave"), Some(Role::Auditor));
        // The config's role cannot be changed from the command line.
        assert!(matches!(
            add_user(dir.path(), &c, "carol", "long enough pw", Some(Role::Admin)),
            Err(UserError::RoleConflict { .. })
        ));
        assert_eq!(
            add_user(
                dir.path(),
                &c,
                "carol",
                "long enough pw",
                Some(Role::Reviewer)
            )
            .unwrap(),
            Role::Reviewer
        );
        assert!(matches!(
            add_user(
                dir.path(),
                &c,
                "bad name",
                "long enough pw",
                Some(Role::Admin)
            ),
            Err(UserError::BadName(_))
        ));
    }

    #[test]
    fn duplicate_users_are_refused() {
        let text = "[[user]]\nname = \"a\"\nrole = \"admin\"\n[[user]]\nname = \"a\"\nrole = \"auditor\"\n";
        assert!(Config::parse(Path::new("x"), text).is_err());
        let unknown = "[[user]]\nname = \"a\"\nrole = \"boss\"\n";
        assert!(Config::parse(Path::new("x"), unknown).is_err());
    }
}
