//! The emulator's state: the objects by key with the global
//! resourceVersion and the event log every change is recorded in
//! ([`Store`]), and what the request handlers share ([`Inner`]): the store,
//! the counters and the test hooks.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::events::{EventLog, EventType, WatchControl};

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) objects: BTreeMap<(String, String, String), Value>,
    pub(crate) resource_version: u64,
    pub(crate) next_uid: u64,
    pub(crate) next_ip: u32,
    /// Every change, for WATCH.
    pub(crate) events: EventLog,
}

impl Store {
    /// Stores an object (carrying its new resourceVersion) and records the
    /// watch event; every write goes through here or `remove`.
    pub(crate) fn put(&mut self, key: (String, String, String), object: Value) {
        let event = if self.objects.contains_key(&key) {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.events.record(event, &key.0, &key.1, &object);
        self.objects.insert(key, object);
    }

    /// The objects of one type (in one namespace), in key order: a range of
    /// the map, not a scan of every object (50,000 objects, 300 LISTs).
    pub(crate) fn in_scope<'a>(
        &'a self,
        qualified: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let start = (
            qualified.to_string(),
            namespace.unwrap_or("").to_string(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(move |((q, ns, _), _)| {
                q == qualified && namespace.is_none_or(|wanted| ns == wanted)
            })
            .map(|(_, v)| v)
    }

    /// Deletes an object: a new resourceVersion, and a DELETED event carrying
    /// the object's last state at that version.
    pub(crate) fn remove(&mut self, key: &(String, String, String)) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.events
            .record(EventType::Deleted, &key.0, &key.1, &object);
        Some(object)
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) store: Mutex<Store>,
    pub(crate) latency_ms: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) forbidden: Mutex<HashSet<String>>,
    pub(crate) paths: Mutex<Vec<String>>,
    pub(crate) watch: WatchControl,
}
