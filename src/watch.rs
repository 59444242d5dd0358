//! Directory watches plus a stat poll, debounced into "this subject may have changed".

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::config::WatchConfig;

/// What a change notification is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// The configuration file.
    Config,
    /// A catalogue entry, by id.
    Entry(String),
}

/// Watches the files behind every subject. Any event or poll difference
/// means "maybe changed": after `debounce` of quiet the subject is sent on
/// the channel; the reloader decides by content hash.
pub struct Watcher {
    _private: (),
}

impl Watcher {
    /// Start watching nothing; call [`Watcher::set`] to say what to watch.
    pub fn start(config: WatchConfig) -> (Watcher, mpsc::UnboundedReceiver<Subject>) {
        let _ = config;
        todo!("watch::Watcher::start")
    }

    /// Replace the watched set: each subject with the paths behind it.
    pub fn set(&self, subjects: Vec<(Subject, Vec<PathBuf>)>) {
        let _ = subjects;
        todo!("watch::Watcher::set")
    }
}
