//! Entries created through the admin API, persisted encrypted (AES-256-GCM) and written atomically.
//!
//! The whole catalogue of stored entries is one JSON document, sealed with
//! AES-256-GCM under the 32-byte key in `store.key_file` and a fresh random
//! nonce per write, so neither key PEMs nor paths are readable at rest. The
//! file is replaced with temp + fsync + rename: a crash leaves the old or
//! the new store, never a torn one. A symlinked path is written through:
//! the file it leads to is replaced, and the link stays. A store that does not decrypt is an
//! error naming the file; it is never silently treated as empty.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::shown_path;
use crate::config::{
    EntryKind, EntrySource, EntrySpec, StoreConfig, crl_files_problem, valid_entry_id,
};
use crate::secret::Secret;

/// Binds the ciphertext to this use: a blob sealed for anything else fails.
const AAD: &[u8] = b"hotproxy-store/1";
const FORMAT: &str = "hotproxy-store/1";
/// The largest store file read (entries are PEM text: thousands fit), and
/// so the largest written: a bigger one would stop the next start-up.
pub const MAX_STORE_BYTES: u64 = 64 << 20;

/// An entry definition as the admin API accepts it and the store keeps it
/// (SPEC §4): `{id, type, source: "file", cert_file, key_file | ca_file,
/// crl_files?}` or `{id, type, source: "inline", cert_pem, key_pem | ca_pem,
/// crl_pem?}`. Deliberately not `Debug`: it can hold a key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<Secret>,
    pub ca_pem: Option<String>,
    pub crl_pem: Option<String>,
}

impl Definition {
    /// Check the definition and turn it into an entry spec with `id`. The
    /// error names the field, never its value.
    pub fn into_spec(self, id: &str) -> Result<EntrySpec, String> {
        if !valid_entry_id(id) {
            return Err("id: invalid: it must match ^[a-z0-9][a-z0-9_-]{0,63}$".to_owned());
        }
        self.into_existing_spec(id)
    }

    /// `into_spec` for an entry that exists already (a PUT): its id is not
    /// judged again, as an anonymous entry of the configuration file is
    /// named by its place (`listeners.public.tls.certs[0]`), which the rule
    /// for new ids refuses.
    pub fn into_existing_spec(self, id: &str) -> Result<EntrySpec, String> {
        let kind = EntryKind::parse(&self.kind)
            .ok_or("type: not one of server-pair, client-pair, ca-bundle")?;
        let given = |name: &'static str, present: bool| present.then_some(name);
        let mut fields: Vec<&str> = [
            given("cert_file", self.cert_file.is_some()),
            given("key_file", self.key_file.is_some()),
            given("ca_file", self.ca_file.is_some()),
            given("crl_files", !self.crl_files.is_empty()),
            given("cert_pem", self.cert_pem.is_some()),
            given("key_pem", self.key_pem.is_some()),
            given("ca_pem", self.ca_pem.is_some()),
            given("crl_pem", self.crl_pem.is_some()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let wanted: &[&str] = match (self.source.as_str(), kind.is_pair()) {
            ("file", true) => &["cert_file", "key_file"],
            ("file", false) => &["ca_file", "crl_files"],
            ("inline", true) => &["cert_pem", "key_pem"],
            ("inline", false) => &["ca_pem", "crl_pem"],
            _ => return Err("source: not one of file, inline".to_owned()),
        };
        fields.retain(|f| !wanted.contains(f));
        if let Some(stray) = fields.first() {
            return Err(format!(
                "field {stray} does not apply to a {} entry with source {}; it takes {}",
                kind.as_str(),
                self.source,
                wanted.join(", ")
            ));
        }
        let missing = |name: &str| format!("field {name} is required for a {}", kind.as_str());
        let absolute = |name: &str, p: PathBuf| {
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(format!("field {name} must be an absolute path"))
            }
        };
        let source = match (self.source.as_str(), kind.is_pair()) {
            ("file", true) => EntrySource::PairFiles {
                cert_file: absolute(
                    "cert_file",
                    self.cert_file.ok_or_else(|| missing("cert_file"))?,
                )?,
                key_file: absolute(
                    "key_file",
                    self.key_file.ok_or_else(|| missing("key_file"))?,
                )?,
            },
            ("file", false) => {
                // Judged before any path: a list of thousands is refused
                // whole, before a file is opened.
                if let Some(problem) = crl_files_problem(&self.crl_files) {
                    return Err(format!("field crl_files: {problem}"));
                }
                EntrySource::CaFiles {
                    ca_file: absolute("ca_file", self.ca_file.ok_or_else(|| missing("ca_file"))?)?,
                    crl_files: self
                        .crl_files
                        .into_iter()
                        .map(|p| absolute("crl_files", p))
                        .collect::<Result<_, _>>()?,
                }
            }
            ("inline", true) => EntrySource::PairInline {
                cert_pem: self.cert_pem.ok_or_else(|| missing("cert_pem"))?,
                key_pem: self.key_pem.ok_or_else(|| missing("key_pem"))?,
            },
            _ => EntrySource::CaInline {
                ca_pem: self.ca_pem.ok_or_else(|| missing("ca_pem"))?,
                crl_pem: self.crl_pem,
            },
        };
        Ok(EntrySpec {
            id: id.to_owned(),
            kind,
            source,
            anonymous: false,
        })
    }
}

/// The plaintext form of one stored entry (only ever inside the sealed blob).
#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    crl_files: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crl_pem: Option<String>,
}

impl Stored {
    fn of(spec: &EntrySpec) -> Stored {
        let mut s = Stored {
            id: spec.id.clone(),
            kind: spec.kind.as_str().to_owned(),
            source: if spec.source.is_inline() {
                "inline"
            } else {
                "file"
            }
            .to_owned(),
            cert_file: None,
            key_file: None,
            ca_file: None,
            crl_files: Vec::new(),
            cert_pem: None,
            key_pem: None,
            ca_pem: None,
            crl_pem: None,
        };
        match &spec.source {
            EntrySource::PairFiles {
                cert_file,
                key_file,
            } => {
                s.cert_file = Some(cert_file.clone());
                s.key_file = Some(key_file.clone());
            }
            EntrySource::CaFiles { ca_file, crl_files } => {
                s.ca_file = Some(ca_file.clone());
                s.crl_files = crl_files.clone();
            }
            EntrySource::PairInline { cert_pem, key_pem } => {
                s.cert_pem = Some(cert_pem.clone());
                s.key_pem = Some(key_pem.expose().to_owned());
            }
            EntrySource::CaInline { ca_pem, crl_pem } => {
                s.ca_pem = Some(ca_pem.clone());
                s.crl_pem = crl_pem.clone();
            }
        }
        s
    }

    fn into_spec(self) -> Result<EntrySpec, String> {
        let id = self.id.clone();
        Definition {
            id: None,
            kind: self.kind,
            source: self.source,
            cert_file: self.cert_file,
            key_file: self.key_file,
            ca_file: self.ca_file,
            crl_files: self.crl_files,
            cert_pem: self.cert_pem,
            key_pem: self.key_pem.map(Secret::new),
            ca_pem: self.ca_pem,
            crl_pem: self.crl_pem,
        }
        .into_spec(&id)
        .map_err(|e| format!("stored entry {id}: {e}"))
    }
}

/// The sealed file on disk.
#[derive(Serialize, Deserialize)]
struct Sealed {
    format: String,
    nonce: String,
    ciphertext: String,
}

/// The open store: where it lives and the key that seals it.
pub struct Store {
    path: PathBuf,
    /// The key file it was opened with (the key itself is `key`).
    key_file: PathBuf,
    key: LessSafeKey,
}

/// What opening the store would find, learnt without creating or changing
/// anything (for `check`).
pub enum Preview {
    /// The key is there and the store (if any) decrypts: its entries.
    Opens(Vec<EntrySpec>),
    /// Neither the key file nor the store exists: `open` will create the key.
    CreatesKey,
}

impl Store {
    /// Open (or create the key for) the store and read its entries.
    pub fn open(config: &StoreConfig) -> Result<(Store, Vec<EntrySpec>), String> {
        let key = match existing_key(config)? {
            Some(key) => key,
            None => create_key(&config.key_file)?,
        };
        Store::with_key(config, key)
    }

    /// Every check `open` makes (key mode and length, a store without its
    /// key, decryption, stored definitions), but never creates a key.
    pub fn preview(config: &StoreConfig) -> Result<Preview, String> {
        match existing_key(config)? {
            Some(key) => Store::with_key(config, key).map(|(_, entries)| Preview::Opens(entries)),
            // As `open` would create it: where it may.
            None => crate::fsutil::creatable(&config.key_file)
                .map(|()| Preview::CreatesKey)
                .map_err(|e| {
                    let place = shown_path(&config.key_file);
                    format!("store.key_file {place}: cannot create: {e}")
                }),
        }
    }

    fn with_key(config: &StoreConfig, key: [u8; 32]) -> Result<(Store, Vec<EntrySpec>), String> {
        let store = Store {
            path: config.path.clone(),
            key_file: config.key_file.clone(),
            key: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &key).expect("32 bytes is an AES-256 key"),
            ),
        };
        let entries = store.read()?;
        Ok((store, entries))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    fn read(&self) -> Result<Vec<EntrySpec>, String> {
        let place = shown_path(&self.path);
        // A regular file only: a FIFO in its place must not block startup.
        let bytes = match crate::fsutil::read_regular(&self.path, MAX_STORE_BYTES) {
            Ok(b) => b,
            Err(e) if e.problem.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(format!("store {place}: cannot read: {}", e.problem)),
        };
        let sealed: Sealed = serde_json::from_slice(&bytes)
            .map_err(|_| format!("store {place}: not a hotproxy store file"))?;
        if sealed.format != FORMAT {
            return Err(format!(
                "store {place}: format {:?} is not {FORMAT:?}",
                sealed.format
            ));
        }
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| format!("store {place}: malformed nonce"))?;
        let mut data = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| format!("store {place}: malformed ciphertext"))?;
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut data)
            .map_err(|_| {
                format!(
                    "store {place} cannot be decrypted: wrong store.key_file or a corrupted file (refusing to start with an empty store)"
                )
            })?;
        let stored: Vec<Stored> = serde_json::from_slice(plain)
            .map_err(|e| format!("store {place}: decrypted content is malformed: {e}"))?;
        stored.into_iter().map(Stored::into_spec).collect()
    }

    /// Replace the store's content with `entries`, atomically. Nothing is
    /// written when the file would be larger than [`MAX_STORE_BYTES`]:
    /// `read` would refuse it at the next start-up.
    pub fn save(&self, entries: &[EntrySpec]) -> Result<(), SaveError> {
        let stored: Vec<Stored> = entries.iter().map(Stored::of).collect();
        let mut data = serde_json::to_vec(&stored).expect("plain data serializes");
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| SaveError::Write("no system randomness".to_owned()))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut data,
            )
            .map_err(|_| SaveError::Write("sealing the store failed".to_owned()))?;
        let sealed = Sealed {
            format: FORMAT.into(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(&data),
        };
        let body = serde_json::to_vec_pretty(&sealed).expect("plain data serializes");
        if body.len() as u64 > MAX_STORE_BYTES {
            return Err(SaveError::TooLarge(format!(
                "store {} would be {} bytes, over the {MAX_STORE_BYTES}-byte limit start-up reads",
                shown_path(&self.path),
                body.len()
            )));
        }
        // A store.path that is a symlink (to a file on a persistent
        // volume) stays one: the file it leads to is replaced, beside it.
        // Renamed over the link itself, it would leave that file stale.
        // The file helpers' errors name the files they are about (the
        // temp file, a link followed) escaped, as `shown_path` does.
        let target = crate::fsutil::follow_links(&self.path).map_err(|e| {
            SaveError::Write(format!(
                "store {}: cannot follow its symlink: {}",
                shown_path(&self.path),
                e
            ))
        })?;
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(|e| {
                SaveError::Write(format!(
                    "store {}: cannot create {}: {e}",
                    shown_path(&self.path),
                    shown_path(dir)
                ))
            })?;
        }
        crate::fsutil::write_atomic(&target, &body, 0o600)
            .map_err(|e| SaveError::Write(format!("store {}: {e:#}", shown_path(&self.path))))
    }
}

/// Why [`Store::save`] wrote nothing.
#[derive(Debug)]
pub enum SaveError {
    /// The store would pass [`MAX_STORE_BYTES`]: the change is too big to
    /// keep, not a fault of the host.
    TooLarge(String),
    /// Sealing or writing failed (a full disk, a read-only directory).
    Write(String),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::TooLarge(m) | SaveError::Write(m) => f.write_str(m),
        }
    }
}

/// The id of a stored entry is already taken by the configuration file:
/// startup refuses it (ids are unique across both).
pub fn id_clash(id: &str, config_file: &Path, store: &Path) -> String {
    format!(
        "entry {id} is defined both in {} and in the store {}: ids are unique; remove one",
        shown_path(config_file),
        shown_path(store)
    )
}

/// The key when `store.key_file` exists (None when it does not). A missing
/// key is an error when the store exists: a new key could not decrypt it.
fn existing_key(config: &StoreConfig) -> Result<Option<[u8; 32]>, String> {
    let key = read_key(&config.key_file)?;
    if key.is_none() && config.path.exists() {
        return Err(format!(
            "store.key_file {} is missing but the store {} exists: restore the key (a new one could not decrypt it)",
            shown_path(&config.key_file),
            shown_path(&config.path)
        ));
    }
    Ok(key)
}

/// Read the 32-byte key; None when the file does not exist. A key readable
/// by group or others is refused: it unlocks every stored key.
fn read_key(path: &Path) -> Result<Option<[u8; 32]>, String> {
    let place = shown_path(path);
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("store.key_file {place}: {e}")),
    };
    // The kind before the mode: a FIFO or directory is not made a key by
    // a chmod.
    if let Some(what) = crate::fsutil::not_regular(&meta) {
        return Err(format!(
            "store.key_file {place}: {}",
            crate::fsutil::ReadProblem::NotRegular(what)
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "store.key_file {place} has mode {mode:04o}: it must be readable by its owner only (chmod 600 {})",
            shell_word(path, &place)
        ));
    }
    // A regular file only, and small: the size check below names it.
    let bytes = crate::fsutil::read_regular(path, 4096)
        .map_err(|e| format!("store.key_file {place}: {}", e.problem))?;
    bytes.try_into().map(Some).map_err(|b: Vec<u8>| {
        format!(
            "store.key_file {place} holds {} bytes; it must hold exactly 32 random bytes",
            b.len()
        )
    })
}

/// `path` as a shell reads it back, for a command to paste: bare when it
/// is made of plain characters, in single quotes when it holds a space, a
/// quote or another character a shell reads, and `the file` when `shown`
/// (what the message shows) is escaped: an escaped path (`a\tb.key`)
/// pasted names another file, and a raw one would carry the control
/// character to the terminal.
fn shell_word(path: &Path, shown: &str) -> String {
    if path.as_os_str().as_encoded_bytes() != shown.as_bytes() {
        return "the file".to_owned();
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !shown.is_empty() && shown.chars().all(plain) {
        return shown.to_owned();
    }
    format!("'{}'", shown.replace('\'', "'\\''"))
}

/// Create a new random key file (0600), written whole or not at all
/// ([`crate::fsutil::write_new`]: a start that fails or is killed leaves
/// no short key behind) and never over a key already there: one that
/// appeared since [`existing_key`] looked (another start racing this one)
/// is the key.
fn create_key(path: &Path) -> Result<[u8; 32], String> {
    let place = shown_path(path);
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| "no system randomness".to_owned())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let made = !dir.exists();
        fs::create_dir_all(dir)
            .map_err(|e| format!("store.key_file {place}: cannot create its directory: {e}"))?;
        // A directory made here must outlive a power loss too.
        if let Some(parent) = dir.parent().filter(|_| made)
            && let Ok(d) = fs::File::open(parent)
        {
            let _ = d.sync_all();
        }
    }
    match crate::fsutil::write_new(path, &key, 0o600) {
        Ok(true) => {
            tracing::info!(path = %place, "created a new store key (back it up with the store file)");
            Ok(key)
        }
        // Another start put its key there first: the same one for both.
        Ok(false) => read_key(path)?.ok_or_else(|| {
            format!(
                "store.key_file {place}: cannot create: something that leads to no file \
                 is in its place (a dangling symlink?)"
            )
        }),
        Err(e) => Err(format!("store.key_file {place}: cannot create: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    fn cfg(dir: &Path) -> StoreConfig {
        StoreConfig {
            path: dir.join("data/store.json"),
            key_file: dir.join("data/store.key"),
            file_roots: None,
        }
    }

    fn inline(id: &str, key: &str) -> EntrySpec {
        EntrySpec {
            id: id.into(),
            kind: EntryKind::ClientPair,
            source: EntrySource::PairInline {
                cert_pem: "CERT".into(),
                key_pem: Secret::new(key),
            },
            anonymous: false,
        }
    }

    /// Round trip; the key is created 0600; nothing is readable at rest; a
    /// wrong key is an error, not an empty store.
    #[test]
    fn sealed_round_trip_and_wrong_key() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path());
        let (store, none) = Store::open(&c).unwrap();
        assert!(none.is_empty());
        let mode = fs::metadata(&c.key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let secret = "very-secret-key-material";
        store.save(&[inline("a", secret)]).unwrap();
        let at_rest = fs::read_to_string(&c.path).unwrap();
        assert!(!at_rest.contains(secret) && !at_rest.contains("CERT"));
        let mode = fs::metadata(&c.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (_, back) = Store::open(&c).unwrap();
        assert_eq!(back, vec![inline("a", secret)]);
        // A lost key is not silently replaced.
        let key = fs::read(&c.key_file).unwrap();
        fs::remove_file(&c.key_file).unwrap();
        let err = Store::open(&c).err().unwrap();
        assert!(err.contains("is missing"), "{err}");
        // Another key cannot open it.
        let mut other = key.clone();
        other[0] ^= 1;
        write_key(&c.key_file, &other);
        let err = Store::open(&c).err().unwrap();
        assert!(err.contains("cannot be decrypted"), "{err}");
        // A key readable by others is refused.
        fs::set_permissions(&c.key_file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Store::open(&c).err().unwrap();
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
    }

    /// Starts racing to create a missing key all get the one key put in
    /// place, the file's: none puts its own over another's (a replacing
    /// rename gives each start its own key and the file the last one, and
    /// the stores saved with the others never open again).
    #[test]
    fn racing_key_creations_share_one_key() {
        const STARTS: usize = 8;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data/store.key");
        let barrier = std::sync::Barrier::new(STARTS);
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..STARTS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        create_key(&path).unwrap()
                    })
                })
                .collect();
            starts.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let file = fs::read(&path).unwrap();
        // Counted, not compared with assert_eq: a key is never printed.
        let other = keys.iter().filter(|k| k[..] != file[..]).count();
        assert_eq!(other, 0, "starts given another key than the file's");
    }

    fn write_key(path: &Path, key: &[u8]) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .unwrap();
        f.write_all(key).unwrap();
    }

    /// Field checks name the field, never its value.
    #[test]
    fn definition_checks() {
        let def = |json: &str| serde_json::from_str::<Definition>(json).unwrap();
        let err =
            def(r#"{"type":"server-pair","source":"inline","cert_pem":"x","ca_pem":"s3cr3t"}"#)
                .into_spec("a")
                .err()
                .unwrap();
        assert!(err.contains("ca_pem") && !err.contains("s3cr3t"), "{err}");
        let err = def(r#"{"type":"ca-bundle","source":"file","ca_file":"rel.pem"}"#)
            .into_spec("a")
            .err()
            .unwrap();
        assert!(err.contains("absolute"), "{err}");
        assert!(
            def(r#"{"type":"ca-bundle","source":"file","ca_file":"/x.pem"}"#)
                .into_spec("Bad id")
                .is_err()
        );
        assert!(
            def(r#"{"type":"x","source":"file"}"#)
                .into_spec("a")
                .is_err()
        );
    }
}
