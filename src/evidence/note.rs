//! C2SP signed notes, checkpoints and cosignatures, byte for byte.
//!
//! - **Signed note** (c2sp.org/signed-note): a UTF-8 text ending in `\n`, a blank line,
//!   then one line per signature: `— <key name> <base64(key id[4] ‖ signature)>\n` (the
//!   dash is U+2014). An Ed25519 key's id is `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`;
//!   its signature is over the text exactly (the final `\n` included).
//! - **Verifier key**: `<name>+<hex key id>+<base64(0x01 ‖ public key)>`; the private key
//!   file holds `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>` (the format of Go's
//!   `golang.org/x/mod/sumdb/note`, so other tools read both).
//! - **Checkpoint** (c2sp.org/tlog-checkpoint): the note text `<origin>\n<size>\n<base64
//!   root>\n`.
//! - **Cosignature** (c2sp.org/tlog-cosignature): a witness's signature line; key type
//!   0x04, id `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`, signed message
//!   `cosignature/v1\ntime <unix seconds>\n` ‖ checkpoint text, line value `base64(key
//!   id ‖ u64 big-endian time ‖ signature)`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// Algorithm byte of an Ed25519 log key.
const ALG_ED25519: u8 = 0x01;
/// Algorithm byte of an Ed25519 witness cosignature key.
const ALG_COSIGNATURE: u8 = 0x04;
/// The signature line prefix: an em dash and a space.
const DASH: &str = "\u{2014} ";

/// Errors reading keys, notes and checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    Key(String),
    #[error("malformed note: {0}")]
    Note(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    #[error("no valid signature by {0}")]
    Unsigned(String),
    #[error("the system has no randomness to make a key: {0}")]
    Random(String),
}

/// Whether `name` may name a key: non-empty, printable, no space or `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

fn key_id(name: &str, alg: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A signing key and the name it signs under (for a log, its origin).
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    alg: u8,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        write!(f, "NoteSigner({})", self.verifier_key())
    }
}

impl NoteSigner {
    /// A new Ed25519 key from the OS's randomness (fails closed).
    pub fn generate(name: &str, cosigner: bool) -> Result<NoteSigner, NoteError> {
        use argon2::password_hash::rand_core::{OsRng, RngCore as _};
        if !valid_name(name) {
            return Err(NoteError::Key(format!(
                "`{name}` cannot name a key (no spaces, `+` or control characters)"
            )));
        }
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| NoteError::Random(e.to_string()))?;
        Ok(NoteSigner {
            name: name.to_owned(),
            alg: if cosigner {
                ALG_COSIGNATURE
            } else {
                ALG_ED25519
            },
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads `PRIVATE+KEY+<name>+<id>+<base64(alg ‖ seed)>`.
    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::Key("does not start with PRIVATE+KEY+".into()))?;
        // Names hold no `+`; base64 may, so split from the left.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key("expected PRIVATE+KEY+name+id+key".into()));
        };
        let raw = B64
            .decode(b64)
            .map_err(|e| NoteError::Key(format!("key is not base64: {e}")))?;
        let (alg, seed) = raw
            .split_first()
            .ok_or_else(|| NoteError::Key("empty key".into()))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::Key("an Ed25519 key has 32 bytes".into()))?;
        if *alg != ALG_ED25519 && *alg != ALG_COSIGNATURE {
            return Err(NoteError::Key(format!("unknown key type 0x{alg:02x}")));
        }
        let signer = NoteSigner {
            name: name.to_owned(),
            alg: *alg,
            key: SigningKey::from_bytes(&seed),
        };
        if hex::encode(signer.id()) != id {
            return Err(NoteError::Key(format!(
                "key id {id} does not match the key (expected {})",
                hex::encode(signer.id())
            )));
        }
        Ok(signer)
    }

    /// The private key file's text (one line).
    pub fn private_text(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex::encode(self.id()),
            B64.encode(raw)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn id(&self) -> [u8; 4] {
        key_id(&self.name, self.alg, &self.public())
    }

    /// `<name>+<hex id>+<base64(alg ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(&self.public());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id()),
            B64.encode(raw)
        )
    }

    /// The verifier for this key.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            alg: self.alg,
            id: self.id(),
            key: self.key.verifying_key(),
        }
    }

    /// The signature line of a log key over `text` (a note's text, ending in `\n`).
    pub fn sign_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut raw = self.id().to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        format!("{DASH}{} {}\n", self.name, B64.encode(raw))
    }

    /// A witness's cosignature line over a checkpoint's text at `time` (Unix seconds).
    pub fn cosign_line(&self, checkpoint_text: &str, time: u64) -> String {
        let msg = format!("cosignature/v1\ntime {time}\n{checkpoint_text}");
        let sig = self.key.sign(msg.as_bytes());
        let mut raw = self.id().to_vec();
        raw.extend_from_slice(&time.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        format!("{DASH}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A public key that checks signatures (or cosignatures) of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    alg: u8,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Reads `<name>+<hex id>+<base64(alg ‖ public key)>`.
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let text = text.trim();
        // Names hold no `+`; base64 may, so split from the left.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key(format!(
                "`{text}` is not a verifier key (name+id+key)"
            )));
        };
        let raw = B64
            .decode(b64)
            .map_err(|e| NoteError::Key(format!("key is not base64: {e}")))?;
        let (alg, public) = raw
            .split_first()
            .ok_or_else(|| NoteError::Key("empty key".into()))?;
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::Key("an Ed25519 public key has 32 bytes".into()))?;
        if *alg != ALG_ED25519 && *alg != ALG_COSIGNATURE {
            return Err(NoteError::Key(format!("unknown key type 0x{alg:02x}")));
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| NoteError::Key(format!("not an Ed25519 public key: {e}")))?;
        let want = key_id(name, *alg, &public);
        if hex::encode(want) != id {
            return Err(NoteError::Key(format!(
                "key id {id} does not match the key (expected {})",
                hex::encode(want)
            )));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            alg: *alg,
            id: want,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_cosigner(&self) -> bool {
        self.alg == ALG_COSIGNATURE
    }

    /// The key as text again: `<name>+<hex id>+<base64(alg ‖ public key)>`.
    pub fn key_text(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    /// Whether `sig` (a signature line's decoded value) is this key's over `text`; for a
    /// cosigner, the cosignature's time.
    fn check(&self, text: &str, sig: &[u8]) -> Option<u64> {
        if sig.len() < 4 || sig[..4] != self.id {
            return None;
        }
        if self.alg == ALG_COSIGNATURE {
            let time_bytes: [u8; 8] = sig.get(4..12)?.try_into().ok()?;
            let raw: [u8; 64] = sig.get(12..)?.try_into().ok()?;
            let time = u64::from_be_bytes(time_bytes);
            let msg = format!("cosignature/v1\ntime {time}\n{text}");
            let s = ed25519_dalek::Signature::from_bytes(&raw);
            self.key.verify_strict(msg.as_bytes(), &s).ok()?;
            Some(time)
        } else {
            let raw: [u8; 64] = sig.get(4..)?.try_into().ok()?;
            let s = ed25519_dalek::Signature::from_bytes(&raw);
            self.key.verify_strict(text.as_bytes(), &s).ok()?;
            Some(0)
        }
    }
}

/// A signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    /// Key id ‖ signature (‖ time for a cosignature), decoded.
    pub raw: Vec<u8>,
}

/// A signed note: text and signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in `\n`.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// Most signature lines a note may carry (the spec asks verifiers to accept at least 16).
const MAX_SIGNATURES: usize = 100;

impl Note {
    /// Parses `text ‖ "\n" ‖ signature lines`.
    pub fn parse(all: &str) -> Result<Note, NoteError> {
        let split = all
            .rfind("\n\n")
            .ok_or_else(|| NoteError::Note("no blank line before the signatures".into()))?;
        let text = &all[..split + 1];
        let sigs = &all[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(NoteError::Note(
                "the last signature line has no newline".into(),
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs.lines() {
            let rest = line
                .strip_prefix(DASH)
                .ok_or_else(|| NoteError::Note(format!("`{line}` is not a signature line")))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| NoteError::Note(format!("`{line}` has no signature")))?;
            let raw = B64
                .decode(b64)
                .map_err(|e| NoteError::Note(format!("signature of {name} is not base64: {e}")))?;
            if raw.len() < 5 || !valid_name(name) {
                return Err(NoteError::Note(format!("`{line}` is not a signature line")));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                raw,
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Note("no signature lines".into()));
        }
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::Note(format!(
                "more than {MAX_SIGNATURES} signature lines"
            )));
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&format!("{DASH}{} {}\n", s.name, B64.encode(&s.raw)));
        }
        out
    }

    /// A note of `text` signed by `signer`.
    pub fn sign(text: &str, signer: &NoteSigner) -> Note {
        let line = signer.sign_line(text);
        let mut note = Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        note.add_line(&line);
        note
    }

    /// Adds a signature line (as [`NoteSigner::sign_line`] or `cosign_line` wrote it).
    pub fn add_line(&mut self, line: &str) {
        if let Ok(n) = Note::parse(&format!("{}\n{line}", self.text)) {
            for s in n.signatures {
                if !self.signatures.contains(&s) {
                    self.signatures.push(s);
                }
            }
        }
    }

    /// Adds the signature lines of `other` (a note of the same text) that this one lacks.
    pub fn merge(&mut self, other: &Note) -> bool {
        if other.text != self.text {
            return false;
        }
        for s in &other.signatures {
            if !self.signatures.contains(s) && self.signatures.len() < MAX_SIGNATURES {
                self.signatures.push(s.clone());
            }
        }
        true
    }

    /// Whether `verifier` signed (or cosigned) this note; for a cosignature, its time.
    pub fn verified_by(&self, verifier: &NoteVerifier) -> Option<u64> {
        self.signatures
            .iter()
            .filter(|s| s.name == verifier.name)
            .find_map(|s| verifier.check(&self.text, &s.raw))
    }
}

/// A checkpoint's text: the log's origin, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// `<origin>\n<size>\n<base64 root>\n`.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Reads a checkpoint's text (extension lines after the root are ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(NoteError::Checkpoint("no origin line".into()));
        }
        let size_text = lines
            .next()
            .ok_or_else(|| NoteError::Checkpoint("no size line".into()))?;
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(NoteError::Checkpoint(format!(
                "`{size_text}` is not a tree size"
            )));
        }
        let size: u64 = size_text
            .parse()
            .map_err(|_| NoteError::Checkpoint(format!("`{size_text}` is not a tree size")))?;
        let root_text = lines
            .next()
            .ok_or_else(|| NoteError::Checkpoint("no root line".into()))?;
        let root: Hash = B64
            .decode(root_text)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| NoteError::Checkpoint(format!("`{root_text}` is not a root hash")))?;
        if !text.ends_with('\n') {
            return Err(NoteError::Checkpoint("does not end with a newline".into()));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_round_trips_and_a_changed_byte_fails() {
        let log = NoteSigner::generate("clerk.example/test", false).unwrap();
        let back = NoteSigner::parse(&log.private_text()).unwrap();
        assert_eq!(back.verifier_key(), log.verifier_key());
        let v = NoteVerifier::parse(&log.verifier_key()).unwrap();
        let cp = Checkpoint {
            origin: "clerk.example/test".into(),
            size: 12,
            root: [7u8; 32],
        };
        let note = Note::sign(&cp.text(), &log);
        let text = note.to_text();
        assert!(text.contains("\n\n\u{2014} clerk.example/test "), "{text}");
        let parsed = Note::parse(&text).unwrap();
        assert_eq!(parsed.verified_by(&v), Some(0));
        assert_eq!(Checkpoint::parse(&parsed.text).unwrap(), cp);
        let forged = text.replacen("\n12\n", "\n13\n", 1);
        assert_eq!(Note::parse(&forged).unwrap().verified_by(&v), None);
        // Another key of the same name does not verify.
        let other = NoteSigner::generate("clerk.example/test", false).unwrap();
        assert_eq!(parsed.verified_by(&other.verifier()), None);

        // A witness cosigns at a time; the time is covered by the signature.
        let w = NoteSigner::generate("witness.example/w1", true).unwrap();
        let mut cosigned = parsed.clone();
        cosigned.add_line(&w.cosign_line(&cosigned.text, 1_765_000_000));
        let again = Note::parse(&cosigned.to_text()).unwrap();
        assert_eq!(again.verified_by(&w.verifier()), Some(1_765_000_000));
        assert_eq!(again.verified_by(&v), Some(0));
        let wv = NoteVerifier::parse(&w.verifier_key()).unwrap();
        assert!(wv.is_cosigner());
    }

    /// A note and key from Go's `golang.org/x/mod/sumdb/note` documentation: this code
    /// reads what other implementations write.
    #[test]
    fn the_go_sumdb_note_example_verifies() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let v = NoteVerifier::parse(vkey).unwrap();
        let note = Note::parse(text).unwrap();
        assert_eq!(note.verified_by(&v), Some(0));
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let s = NoteSigner::parse(skey).unwrap();
        assert_eq!(s.verifier_key(), vkey);
        let body = &text[..text.find("\n\n").unwrap() + 1];
        assert_eq!(
            Note::sign(body, &s).to_text(),
            text,
            "Ed25519 is deterministic"
        );
    }
}
