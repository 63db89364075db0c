//! The agent's state database: `<root>/state.db`, SQLite in WAL mode with
//! `synchronous=FULL`, so a change is on disk when its transaction commits and
//! is reported only after that.
//!
//! What it holds: every pod the agent owns (its manifest, where it came from,
//! its runtime ID and the step its life is at), the ConfigMaps and Secrets
//! applied beside them, each container's restart count and last state, and
//! the pods' and the node's events. The schema is versioned by `PRAGMA user_version`; a
//! database of a newer schema, or one that is not a database, is reported and
//! never written.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The migrations, in order: `MIGRATIONS[i]` takes the schema from version
/// `i` to `i + 1`. Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE pods (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    -- The runtime's ID of the pod's current sandbox (directories, cgroup, containers).
    pod_id    TEXT NOT NULL,
    -- 'api' (podrun apply) or 'file:<path>' (a static pod).
    source    TEXT NOT NULL,
    -- The manifest as JSON, defaults applied, and the hash of what was applied.
    manifest  TEXT NOT NULL,
    hash      TEXT NOT NULL,
    -- creating | running | finished | replacing | deleting
    state     TEXT NOT NULL,
    created   TEXT NOT NULL,
    -- When the pod last started (RFC 3339), for activeDeadlineSeconds and status.
    started   TEXT,
    -- The last creation error and when to try again.
    error     TEXT,
    retry_at  TEXT,
    attempts  INTEGER NOT NULL DEFAULT 0,
    -- The status last reported (JSON), kept for pods whose records are gone.
    status    TEXT,
    PRIMARY KEY (namespace, name)
);
CREATE UNIQUE INDEX pods_by_id ON pods (pod_id);
CREATE TABLE objects (
    kind      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    source    TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE containers (
    namespace     TEXT NOT NULL,
    pod           TEXT NOT NULL,
    name          TEXT NOT NULL,
    restart_count INTEGER NOT NULL DEFAULT 0,
    -- JSON: the kubelet crate's memory of it (back-off, last exit).
    memory        TEXT,
    PRIMARY KEY (namespace, pod, name)
);
CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    pod       TEXT NOT NULL,
    type      TEXT NOT NULL,
    reason    TEXT NOT NULL,
    message   TEXT NOT NULL,
    count     INTEGER NOT NULL,
    first     TEXT NOT NULL,
    last      TEXT NOT NULL
);
CREATE INDEX events_by_pod ON events (namespace, pod);
"#,
    r#"
-- The kind of object an event is about: 'Pod' (the column `pod` names it)
-- or 'Node' (kubelet's node events, e.g. FreeDiskSpaceFailed, in 'default').
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'Pod';
"#,
];

/// The schema version this podrun writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// state database {path}: {cause}
    #[error("state database {path}: {cause}")]
    Sql {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        cause: rusqlite::Error,
    },
    /// Not a database, or damaged: left as it is.
    #[error("state database {path} is damaged ({cause}); it was left as it is: move it away to start with an empty state (the pods it knew will not be adopted)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        cause: String,
    },
    /// Written by a newer podrun.
    #[error("state database {path} has schema version {found}, newer than this podrun's {SCHEMA_VERSION}: it was written by a newer podrun and is left as it is")]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
}

/// A pod's row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodRow {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The runtime's ID of its current sandbox.
    pub pod_id: String,
    /// `api` or `file:<path>`.
    pub source: String,
    /// The manifest (JSON, defaults applied).
    pub manifest: String,
    /// Hash of the manifest as applied.
    pub hash: String,
    /// Where in its life it is.
    pub state: PodPhase,
    /// RFC 3339.
    pub created: String,
    /// When its sandbox last started (RFC 3339).
    pub started: Option<String>,
    /// Why its creation last failed.
    pub error: Option<String>,
    /// When to try creating it again (RFC 3339).
    pub retry_at: Option<String>,
    /// Failed creations in a row.
    pub attempts: i64,
    /// The status last reported (JSON).
    pub status: Option<String>,
}

/// The step of a pod's life the agent is at; each is a commitment the agent
/// finishes (or rolls back) after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodPhase {
    /// Its sandbox is being made: what exists of `pod_id` is removed and made again.
    Creating,
    /// Its monitor runs it.
    Running,
    /// It ended (Succeeded or Failed); its records are kept, its sandbox is gone.
    Finished,
    /// A changed manifest replaces it: `pod_id` is removed, then a new one made.
    Replacing,
    /// It is being removed: `pod_id` is stopped and removed, then the row.
    Deleting,
}

impl PodPhase {
    fn as_str(self) -> &'static str {
        match self {
            PodPhase::Creating => "creating",
            PodPhase::Running => "running",
            PodPhase::Finished => "finished",
            PodPhase::Replacing => "replacing",
            PodPhase::Deleting => "deleting",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "creating" => PodPhase::Creating,
            "running" => PodPhase::Running,
            "finished" => PodPhase::Finished,
            "replacing" => PodPhase::Replacing,
            "deleting" => PodPhase::Deleting,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown pod state {other:?}").into(),
                ))
            }
        })
    }
}

/// A ConfigMap or Secret applied to the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    /// `ConfigMap`, `Secret` or `PersistentVolumeClaim`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `api` or `file:<path>`.
    pub source: String,
    /// The object as JSON.
    pub body: String,
}

/// One event of a pod (kubectl's columns).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRow {
    /// `Normal` or `Warning`.
    pub type_: String,
    /// `Scheduled`, `Pulling`, `Started`, `BackOff` …
    pub reason: String,
    /// What happened.
    pub message: String,
    /// How many times in a row.
    pub count: i64,
    /// RFC 3339.
    pub first: String,
    /// RFC 3339.
    pub last: String,
}

/// An event with the object it is about and its row ID (a watch tells a
/// new event from one counted up by it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredEvent {
    /// The row's ID.
    pub id: i64,
    /// The object's kind (the event's `involvedObject.kind`): `Pod`, or
    /// `Node` for the node's own events. Not `kind` on the wire: a watch
    /// tags what it sends with that.
    #[serde(rename = "involved_kind", default = "pod_kind")]
    pub kind: String,
    /// The object's namespace (`default` for the node's events, as kubelet
    /// records them).
    pub namespace: String,
    /// The object's name (the pod's, or the node's).
    pub pod: String,
    /// The event.
    #[serde(flatten)]
    pub event: EventRow,
}

/// The kind of events recorded before events had one.
fn pod_kind() -> String {
    "Pod".into()
}

/// One change of an apply, committed together with the others.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new pod.
    CreatePod(PodRow),
    /// A changed manifest for an existing pod.
    ReplacePod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The new manifest.
        manifest: String,
        /// Its hash.
        hash: String,
    },
    /// A changed manifest that the running pod takes in place (only fields
    /// the API server lets a pod update changed, such as images): its
    /// sandbox stays and its syncs make the changed containers again.
    UpdatePod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The new manifest.
        manifest: String,
        /// Its hash.
        hash: String,
    },
    /// A ConfigMap or Secret, created or replaced.
    PutObject(ObjectRow),
}

/// The open database.
pub struct Db {
    conn: Connection,
    path: PathBuf,
    /// Counts the commits that changed a pod or an event: the agent's
    /// watches (`get -w`, `wait`) wait on it instead of polling.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Db {
    /// Open (or create) `<root>/state.db` and bring its schema up to date.
    pub fn open(root: &Path) -> Result<Db, DbError> {
        let path = root.join("state.db");
        let sql = |cause| DbError::Sql {
            path: path.clone(),
            cause,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        // The first read tells a damaged file from a database.
        let version: i64 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
            Ok(v) => v,
            Err(e) => {
                return Err(DbError::Corrupt {
                    path,
                    cause: e.to_string(),
                })
            }
        };
        if version > SCHEMA_VERSION {
            return Err(DbError::Newer {
                path,
                found: version,
            });
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| DbError::Corrupt {
                path: path.clone(),
                cause: e.to_string(),
            })?;
        if check != "ok" {
            return Err(DbError::Corrupt { path, cause: check });
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        let mut db = Db {
            conn,
            path,
            changes: tokio::sync::watch::Sender::new(0),
        };
        db.migrate(version)?;
        Ok(db)
    }

    /// A database in memory, for a pod run in the foreground (`podrun run`):
    /// the same pod manager, nothing kept after the command.
    pub fn open_memory() -> Result<Db, DbError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|cause| DbError::Sql {
            path: path.clone(),
            cause,
        })?;
        let mut db = Db {
            conn,
            path,
            changes: tokio::sync::watch::Sender::new(0),
        };
        db.migrate(0)?;
        Ok(db)
    }

    /// A receiver that is told of every committed change of a pod or an
    /// event (the value only counts them: a watcher that wakes reads what is
    /// there now, so changes close together reach it as one).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tell the watchers that a pod or an event changed (after the commit).
    fn changed<T>(&self, result: Result<T, DbError>) -> Result<T, DbError> {
        if result.is_ok() {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        result
    }

    fn err(&self, cause: rusqlite::Error) -> DbError {
        DbError::Sql {
            path: self.path.clone(),
            cause,
        }
    }

    fn migrate(&mut self, from: i64) -> Result<(), DbError> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self_err(&self.path, e))?;
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", (i + 1) as i64))
                .and_then(|_| tx.commit())
                .map_err(|e| self_err(&self.path, e))?;
        }
        Ok(())
    }

    /// Every pod row, by namespace and name.
    pub fn pods(&self) -> Result<Vec<PodRow>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {POD_COLUMNS} FROM pods ORDER BY namespace, name"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], pod_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodRow>, DbError> {
        self.conn
            .query_row(
                &format!("SELECT {POD_COLUMNS} FROM pods WHERE namespace = ?1 AND name = ?2"),
                params![namespace, name],
                pod_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Commit every change of one apply, or none.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), DbError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self_err(&path, e))?;
        for c in changes {
            let r = match c {
                Change::CreatePod(p) => tx.execute(
                    "INSERT INTO pods (namespace, name, pod_id, source, manifest, hash, state, created, attempts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)",
                    params![p.namespace, p.name, p.pod_id, p.source, p.manifest, p.hash, p.state.as_str(), p.created],
                ),
                Change::ReplacePod { namespace, name, manifest, hash } => tx.execute(
                    "UPDATE pods SET manifest = ?3, hash = ?4, state = 'replacing', error = NULL,
                     retry_at = NULL, attempts = 0 WHERE namespace = ?1 AND name = ?2",
                    params![namespace, name, manifest, hash],
                ),
                Change::UpdatePod { namespace, name, manifest, hash } => tx.execute(
                    "UPDATE pods SET manifest = ?3, hash = ?4 WHERE namespace = ?1 AND name = ?2",
                    params![namespace, name, manifest, hash],
                ),
                Change::PutObject(o) => tx.execute(
                    "INSERT OR REPLACE INTO objects (kind, namespace, name, source, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![o.kind, o.namespace, o.name, o.source, o.body],
                ),
            };
            r.map_err(|e| self_err(&path, e))?;
        }
        let r = tx.commit().map_err(|e| self_err(&path, e));
        self.changed(r)
    }

    /// Move a pod to `state` (a new sandbox is [`Db::new_sandbox`]).
    pub fn set_state(&self, namespace: &str, name: &str, state: PodPhase) -> Result<(), DbError> {
        let r = self
            .conn
            .execute(
                "UPDATE pods SET state = ?3 WHERE namespace = ?1 AND name = ?2",
                params![namespace, name, state.as_str()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e));
        self.changed(r)
    }

    /// Give a pod a new sandbox ID (state `creating`), and rewrite what is kept
    /// of each of its containers with `keep` ((name, stored) → new, or None to
    /// forget it), in one transaction.
    pub fn new_sandbox(
        &mut self,
        namespace: &str,
        name: &str,
        pod_id: &str,
        keep: impl Fn((&str, &str)) -> Option<String>,
    ) -> Result<(), DbError> {
        let path = self.path.clone();
        let e = |c| self_err(&path, c);
        let tx = self.conn.transaction().map_err(e)?;
        let rows: Vec<(String, String)> = {
            let mut stmt = tx
                .prepare("SELECT name, COALESCE(memory, '') FROM containers WHERE namespace = ?1 AND pod = ?2")
                .map_err(e)?;
            let rows = stmt
                .query_map(params![namespace, name], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(e)?;
            rows
        };
        for (container, memory) in rows {
            match keep((&container, &memory)) {
                Some(m) => tx.execute(
                    "UPDATE containers SET memory = ?4, restart_count = restart_count WHERE namespace = ?1 AND pod = ?2 AND name = ?3",
                    params![namespace, name, container, m],
                ),
                None => tx.execute(
                    "DELETE FROM containers WHERE namespace = ?1 AND pod = ?2 AND name = ?3",
                    params![namespace, name, container],
                ),
            }
            .map_err(e)?;
        }
        tx.execute(
            "UPDATE pods SET state = 'creating', pod_id = ?3, started = NULL, status = NULL WHERE namespace = ?1 AND name = ?2",
            params![namespace, name, pod_id],
        )
        .map_err(e)?;
        let r = tx.commit().map_err(e);
        self.changed(r)
    }

    /// Record that the pod's sandbox started now: clears the creation error.
    pub fn set_running(&self, namespace: &str, name: &str, started: &str) -> Result<(), DbError> {
        let r = self.conn
            .execute(
                "UPDATE pods SET state = 'running', started = ?3, error = NULL, retry_at = NULL, attempts = 0
                 WHERE namespace = ?1 AND name = ?2",
                params![namespace, name, started],
            )
            .map(|_| ())
            .map_err(|e| self.err(e));
        self.changed(r)
    }

    /// Record a failed creation and when to try again.
    pub fn set_error(
        &self,
        namespace: &str,
        name: &str,
        error: &str,
        retry_at: &str,
    ) -> Result<(), DbError> {
        let r = self.conn
            .execute(
                "UPDATE pods SET error = ?3, retry_at = ?4, attempts = attempts + 1 WHERE namespace = ?1 AND name = ?2",
                params![namespace, name, error, retry_at],
            )
            .map(|_| ())
            .map_err(|e| self.err(e));
        self.changed(r)
    }

    /// Store the status last reported.
    pub fn set_status(&self, namespace: &str, name: &str, status: &str) -> Result<(), DbError> {
        let r = self
            .conn
            .execute(
                "UPDATE pods SET status = ?3 WHERE namespace = ?1 AND name = ?2",
                params![namespace, name, status],
            )
            .map(|_| ())
            .map_err(|e| self.err(e));
        self.changed(r)
    }

    /// Mark pods for deletion; returns how many were.
    pub fn mark_deleting(
        &mut self,
        namespace: &str,
        name: &str,
        mark: impl FnOnce(&str) -> String,
    ) -> Result<usize, DbError> {
        let path = self.path.clone();
        let e = |c| self_err(&path, c);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let manifest: Option<String> = tx
            .query_row(
                "SELECT manifest FROM pods WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        let Some(manifest) = manifest else {
            return Ok(0);
        };
        let n = tx
            .execute(
                "UPDATE pods SET state = 'deleting', manifest = ?3 WHERE namespace = ?1 AND name = ?2",
                params![namespace, name, mark(&manifest)],
            )
            .map_err(e)?;
        let r = tx.commit().map_err(e).map(|()| n);
        self.changed(r)
    }

    /// Forget a pod (its sandbox is gone), with its containers and events.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Result<(), DbError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| self_err(&path, e))?;
        for table in ["pods", "containers", "events"] {
            let column = match table {
                "pods" => "name",
                "events" => "kind = 'Pod' AND pod",
                _ => "pod",
            };
            tx.execute(
                &format!("DELETE FROM {table} WHERE namespace = ?1 AND {column} = ?2"),
                params![namespace, name],
            )
            .map_err(|e| self_err(&path, e))?;
        }
        let r = tx.commit().map_err(|e| self_err(&path, e));
        self.changed(r)
    }

    /// A ConfigMap or Secret.
    pub fn object(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectRow>, DbError> {
        self.conn
            .query_row(
                "SELECT kind, namespace, name, source, body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![kind, namespace, name],
                object_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every object of a namespace.
    pub fn objects(&self, namespace: &str) -> Result<Vec<ObjectRow>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kind, namespace, name, source, body FROM objects WHERE namespace = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![namespace], object_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The stored objects of one kind in every namespace, by namespace and name.
    pub fn objects_of_kind(&self, kind: &str) -> Result<Vec<ObjectRow>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kind, namespace, name, source, body FROM objects WHERE kind = ?1 ORDER BY namespace, name",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![kind], object_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Remove a ConfigMap, Secret or PersistentVolumeClaim; true when it existed.
    pub fn remove_object(&self, kind: &str, namespace: &str, name: &str) -> Result<bool, DbError> {
        self.conn
            .execute(
                "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![kind, namespace, name],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// A container's restart count and the kubelet crate's memory of it.
    pub fn container(
        &self,
        namespace: &str,
        pod: &str,
        name: &str,
    ) -> Result<(i64, Option<String>), DbError> {
        self.conn
            .query_row(
                "SELECT restart_count, memory FROM containers WHERE namespace = ?1 AND pod = ?2 AND name = ?3",
                params![namespace, pod, name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map(|o| o.unwrap_or((0, None)))
            .map_err(|e| self.err(e))
    }

    /// Store a container's restart count and memory.
    pub fn set_container(
        &self,
        namespace: &str,
        pod: &str,
        name: &str,
        restart_count: i64,
        memory: Option<&str>,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "INSERT INTO containers (namespace, pod, name, restart_count, memory) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (namespace, pod, name) DO UPDATE SET restart_count = ?4, memory = ?5",
                params![namespace, pod, name, restart_count, memory],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Record an event; one like an earlier one of the pod (same type,
    /// reason and message) counts up instead, as the API server's event
    /// aggregation shows `(x4 over 2m)`.
    pub fn event(
        &self,
        namespace: &str,
        pod: &str,
        type_: &str,
        reason: &str,
        message: &str,
        now: &str,
    ) -> Result<(), DbError> {
        self.object_event("Pod", namespace, pod, type_, reason, message, now)
    }

    /// Record an event of the node `node` (kubelet records them in the
    /// `default` namespace), counted up as [`Db::event`] counts.
    pub fn node_event(
        &self,
        node: &str,
        type_: &str,
        reason: &str,
        message: &str,
        now: &str,
    ) -> Result<(), DbError> {
        self.object_event("Node", "default", node, type_, reason, message, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn object_event(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        type_: &str,
        reason: &str,
        message: &str,
        now: &str,
    ) -> Result<(), DbError> {
        let updated = self
            .conn
            .execute(
                "UPDATE events SET count = count + 1, last = ?6
                 WHERE namespace = ?1 AND pod = ?2 AND type = ?3 AND reason = ?4 AND message = ?5
                   AND kind = ?7",
                params![namespace, name, type_, reason, message, now, kind],
            )
            .map_err(|e| self.err(e))?;
        if updated == 0 {
            self.conn
                .execute(
                    "INSERT INTO events (namespace, pod, type, reason, message, count, first, last, kind)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?7)",
                    params![namespace, name, type_, reason, message, now, kind],
                )
                .map_err(|e| self.err(e))?;
        }
        self.changed(Ok(()))
    }

    /// A pod's events, oldest first.
    pub fn events(&self, namespace: &str, pod: &str) -> Result<Vec<EventRow>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT type, reason, message, count, first, last FROM events
                 WHERE namespace = ?1 AND pod = ?2 AND kind = 'Pod' ORDER BY last, id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![namespace, pod], |r| {
                Ok(EventRow {
                    type_: r.get(0)?,
                    reason: r.get(1)?,
                    message: r.get(2)?,
                    count: r.get(3)?,
                    first: r.get(4)?,
                    last: r.get(5)?,
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Every event of a namespace's pods and the node's (or of every
    /// namespace), with what it is about, in the order they were first
    /// recorded.
    pub fn all_events(&self, namespace: Option<&str>) -> Result<Vec<StoredEvent>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, namespace, pod, type, reason, message, count, first, last, kind
                 FROM events WHERE ?1 IS NULL OR namespace = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![namespace], |r| {
                Ok(StoredEvent {
                    id: r.get(0)?,
                    kind: r.get(9)?,
                    namespace: r.get(1)?,
                    pod: r.get(2)?,
                    event: EventRow {
                        type_: r.get(3)?,
                        reason: r.get(4)?,
                        message: r.get(5)?,
                        count: r.get(6)?,
                        first: r.get(7)?,
                        last: r.get(8)?,
                    },
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }
}

fn self_err(path: &Path, cause: rusqlite::Error) -> DbError {
    DbError::Sql {
        path: path.to_path_buf(),
        cause,
    }
}

const POD_COLUMNS: &str = "namespace, name, pod_id, source, manifest, hash, state, created, started, error, retry_at, attempts, status";

fn object_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    Ok(ObjectRow {
        kind: r.get(0)?,
        namespace: r.get(1)?,
        name: r.get(2)?,
        source: r.get(3)?,
        body: r.get(4)?,
    })
}

fn pod_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PodRow> {
    Ok(PodRow {
        namespace: r.get(0)?,
        name: r.get(1)?,
        pod_id: r.get(2)?,
        source: r.get(3)?,
        manifest: r.get(4)?,
        hash: r.get(5)?,
        state: PodPhase::parse(&r.get::<_, String>(6)?)?,
        created: r.get(7)?,
        started: r.get(8)?,
        error: r.get(9)?,
        retry_at: r.get(10)?,
        attempts: r.get(11)?,
        status: r.get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, id: &str) -> PodRow {
        PodRow {
            namespace: "default".into(),
            name: name.into(),
            pod_id: id.into(),
            source: "api".into(),
            manifest: "{}".into(),
            hash: "h".into(),
            state: PodPhase::Creating,
            created: "2026-11-27T00:00:00Z".into(),
            started: None,
            error: None,
            retry_at: None,
            attempts: 0,
            status: None,
        }
    }

    #[test]
    fn a_new_database_gets_the_schema_and_keeps_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut db = Db::open(dir.path()).unwrap();
            db.apply(&[Change::CreatePod(row("web", "default-web-1"))])
                .unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let pods = db.pods().unwrap();
        assert_eq!(pods, vec![row("web", "default-web-1")]);
        let v: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn an_apply_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path()).unwrap();
        db.apply(&[Change::CreatePod(row("web", "a"))]).unwrap();
        // The second pod's name is taken: neither it nor the object is stored.
        let err = db.apply(&[
            Change::PutObject(ObjectRow {
                kind: "ConfigMap".into(),
                namespace: "default".into(),
                name: "cfg".into(),
                source: "api".into(),
                body: "{}".into(),
            }),
            Change::CreatePod(row("web", "b")),
        ]);
        assert!(err.is_err());
        assert!(db.object("ConfigMap", "default", "cfg").unwrap().is_none());
        assert_eq!(db.pods().unwrap().len(), 1);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("state.db")).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let before = std::fs::read(dir.path().join("state.db")).unwrap();
        let err = Db::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("newer than this podrun"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("state.db")).unwrap(), before);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let junk = b"this is not an SQLite database, it is a text file of some length".repeat(64);
        std::fs::write(dir.path().join("state.db"), &junk).unwrap();
        let err = Db::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is damaged"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("state.db")).unwrap(), junk);
    }

    #[test]
    fn like_events_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.event("default", "web", "Warning", "BackOff", "back-off", "t1")
            .unwrap();
        db.event("default", "web", "Warning", "BackOff", "back-off", "t2")
            .unwrap();
        db.event("default", "web", "Normal", "Started", "started", "t3")
            .unwrap();
        db.event("default", "web", "Warning", "BackOff", "back-off", "t4")
            .unwrap();
        // Listed by their last time, as kubectl describe sorts them.
        let e = db.events("default", "web").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].reason, "Started");
        assert_eq!(
            (e[1].count, e[1].first.as_str(), e[1].last.as_str()),
            (3, "t1", "t4")
        );
    }

    #[test]
    fn node_events_count_up_apart_from_a_pod_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path()).unwrap();
        let msg = "Failed to garbage collect required amount of images.";
        db.node_event("box", "Warning", "FreeDiskSpaceFailed", msg, "t1")
            .unwrap();
        db.node_event("box", "Warning", "FreeDiskSpaceFailed", msg, "t2")
            .unwrap();
        db.event("default", "box", "Normal", "Started", "started", "t3")
            .unwrap();
        let all = db.all_events(Some("default")).unwrap();
        let kinds: Vec<(&str, &str, i64)> = all
            .iter()
            .map(|e| (e.kind.as_str(), e.event.reason.as_str(), e.event.count))
            .collect();
        assert_eq!(
            kinds,
            [("Node", "FreeDiskSpaceFailed", 2), ("Pod", "Started", 1)]
        );
        // The pod's events are its own; forgetting the pod keeps the node's.
        assert_eq!(db.events("default", "box").unwrap().len(), 1);
        db.remove_pod("default", "box").unwrap();
        let left = db.all_events(None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].kind, "Node");
    }
}
