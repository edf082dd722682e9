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
    #[error("`{0}` is not a user of the config (add `[[user]] name = \"{0}\" role = \"reviewer\"` to clerk.toml first)")]
    NotInConfig(String),
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
            UserError::NotInConfig(_) | UserError::TooShort => 2,
            UserError::BadCredentials => 3,
            _ => 1,
        }
    }
}

/// What a role lets a user do in the console (the engine's own checks still apply: a
/// decision needs the channel's reviewer list and four eyes, a pause an operator or
/// reviewer of some channel).
pub fn may_decide(role: Role) -> bool {
    matches!(role, Role::Reviewer | Role::Admin)
}

/// Whether a role may pause and resume.
pub fn may_pause(role: Role) -> bool {
    matches!(role, Role::Operator | Role::Reviewer | Role::Admin)
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

/// Sets (or replaces) the password of `name`, who must be a `[[user]]` of the config.
pub fn set_password(
    data_dir: &Path,
    config: &Config,
    name: &str,
    password: &str,
) -> Result<Role, UserError> {
    let role = config
        .role_of(name)
        .ok_or_else(|| UserError::NotInConfig(name.to_owned()))?;
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::TooShort);
    }
    let mut all = load(data_dir)?;
    all.insert(name.to_owned(), hash_password(password)?);
    save(data_dir, &all)?;
    Ok(role)
}

fn save(data_dir: &Path, all: &BTreeMap<String, String>) -> Result<(), UserError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let path = passwords_path(data_dir);
    let dir = data_dir.join("users");
    let write_err = |source| UserError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(write_err)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(write_err)?;
    let tmp = dir.join("passwords.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err)?;
    let text = serde_json::to_vec_pretty(all).map_err(|e| write_err(e.into()))?;
    file.write_all(&text).map_err(write_err)?;
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
    let role = config.role_of(name);
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
    fn duplicate_users_are_refused() {
        let text = "[[user]]\nname = \"a\"\nrole = \"admin\"\n[[user]]\nname = \"a\"\nrole = \"auditor\"\n";
        assert!(Config::parse(Path::new("x"), text).is_err());
        let unknown = "[[user]]\nname = \"a\"\nrole = \"boss\"\n";
        assert!(Config::parse(Path::new("x"), unknown).is_err());
    }
}
