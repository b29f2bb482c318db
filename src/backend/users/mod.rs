//! The auth service's user table, seen from the gateway (the seed's "carry writes/updates on
//! user-table from auth svc"): an optional directory of the users that exist.
//!
//! With a directory configured, a handshake of a user it does not know is refused, a send to a
//! user it does not know is answered `unknown_recipient` and nothing is stored, and a user it
//! learns was deleted has every socket closed (4010). Without one (the default), every user id
//! a token names exists, as before.
//!
//! It is fed by one of two sources ([`file`], [`topic`]), both of the same records (the format
//! is in `docs/PROTOCOL.md`). One feeder thread writes; shards only read, on every send. The
//! state is a persistent map behind an `ArcSwap`: a read is a lock-free pointer load, and an
//! update clones the map in O(1) (structural sharing) and changes only the paths it touches,
//! so a million users cost no copy per event and nothing per shard.

pub mod file;
pub mod topic;

use std::sync::Arc;

use arc_swap::ArcSwap;

/// One record of the user table's change log. User ids are the stable `sub` of tokens: a
/// rename changes the display name, never the id (an id change is a delete and a create).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum UserEvent {
    #[serde(rename = "user.created")]
    Created {
        user_id: String,
        #[serde(default)]
        name: Option<String>,
    },
    #[serde(rename = "user.renamed")]
    Renamed { user_id: String, name: String },
    #[serde(rename = "user.deleted")]
    Deleted { user_id: String },
}

impl UserEvent {
    /// Parses one record; `Err` carries a readable reason.
    pub fn parse(text: &str) -> Result<UserEvent, String> {
        let event: UserEvent = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let id = event.user_id();
        if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
            return Err(format!(
                "user_id {id:?} is not 1-128 bytes without control characters"
            ));
        }
        Ok(event)
    }

    pub fn user_id(&self) -> &str {
        match self {
            UserEvent::Created { user_id, .. }
            | UserEvent::Renamed { user_id, .. }
            | UserEvent::Deleted { user_id } => user_id,
        }
    }
}

/// What the directory keeps of a user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    /// Display name from the auth service, if it sent one. Kept for the server API; the
    /// message path does not use it.
    pub name: Option<Arc<str>>,
}

type Users = imbl::HashMap<Arc<str>, User>;

/// See the module doc. Shared by every shard (`Arc`); written by one feeder thread.
#[derive(Default)]
pub struct UserDirectory {
    users: ArcSwap<Users>,
}

impl UserDirectory {
    /// Whether `user` exists. The hot-path read: one atomic load and a hash lookup.
    pub fn knows(&self, user: &str) -> bool {
        self.users.load().contains_key(user)
    }

    pub fn get(&self, user: &str) -> Option<User> {
        self.users.load().get(user).cloned()
    }

    pub fn len(&self) -> usize {
        self.users.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies `events` in order as one update; returns the users that existed before and
    /// do not now (whose sockets must close). A rename of an unknown user creates it (the
    /// log may have been compacted down to the rename); deleting an unknown user is a no-op.
    pub fn apply(&self, events: impl IntoIterator<Item = UserEvent>) -> Vec<String> {
        let mut users = (*self.users.load_full()).clone();
        let mut gone: Vec<String> = Vec::new();
        for event in events {
            match &event {
                UserEvent::Deleted { user_id } if users.contains_key(user_id.as_str()) => {
                    gone.push(user_id.clone())
                }
                UserEvent::Deleted { .. } => {}
                other => gone.retain(|u| u != other.user_id()),
            }
            fold(&mut users, event);
        }
        self.users.store(Arc::new(users));
        gone
    }

    /// Replaces the whole table with the fold of `events` (a re-read file); returns the
    /// users that existed before and do not now.
    pub fn replace(&self, events: impl IntoIterator<Item = UserEvent>) -> Vec<String> {
        let before = self.users.load_full();
        let mut users = Users::new();
        for event in events {
            fold(&mut users, event);
        }
        let gone = removed(&before, &users);
        self.users.store(Arc::new(users));
        gone
    }
}

fn fold(users: &mut Users, event: UserEvent) {
    match event {
        UserEvent::Created { user_id, name } => {
            let name = name.map(Arc::from);
            users.insert(Arc::from(user_id), User { name });
        }
        UserEvent::Renamed { user_id, name } => {
            let name = Some(Arc::from(name));
            users.insert(Arc::from(user_id), User { name });
        }
        UserEvent::Deleted { user_id } => {
            users.remove(user_id.as_str());
        }
    }
}

/// Users in `before` that `after` lacks.
fn removed(before: &Users, after: &Users) -> Vec<String> {
    before
        .keys()
        .filter(|u| !after.contains_key(u.as_ref()))
        .map(|u| u.to_string())
        .collect()
}

/// The thread that keeps a directory current, whichever its source.
pub enum Feeder {
    File(file::FileFeeder),
    Topic(topic::TopicFeeder),
}

impl Feeder {
    pub fn stop(self) {
        match self {
            Feeder::File(f) => f.stop(),
            Feeder::Topic(t) => t.stop(),
        }
    }
}

/// Called with the users a feeder found deleted, so that their sockets close. The pod
/// supplies it (it reaches the shards); the feeders know nothing of shards.
pub type OnDeleted = Box<dyn Fn(Vec<String>) + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: &str) -> UserEvent {
        UserEvent::Created {
            user_id: id.into(),
            name: None,
        }
    }

    #[test]
    fn records_parse_in_the_documented_format_and_bad_ones_are_refused() {
        let e = UserEvent::parse(r#"{"type":"user.created","user_id":"alice","name":"Alice"}"#);
        assert_eq!(
            e,
            Ok(UserEvent::Created {
                user_id: "alice".into(),
                name: Some("Alice".into())
            })
        );
        let d = UserEvent::parse(r#"{"type":"user.deleted","user_id":"bob"}"#).unwrap();
        assert_eq!(d.user_id(), "bob");
        for bad in [
            r#"{"type":"user.created"}"#,
            r#"{"type":"user.exploded","user_id":"a"}"#,
            r#"{"type":"user.created","user_id":""}"#,
            r#"{"type":"user.created","user_id":"a","extra":1}"#,
            r#"{"type":"user.renamed","user_id":"a"}"#,
            "not json",
        ] {
            assert!(UserEvent::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn events_fold_in_order_and_deletions_are_reported_once() {
        let dir = UserDirectory::default();
        assert!(dir.apply([created("alice"), created("bob")]).is_empty());
        assert!(dir.knows("alice") && dir.knows("bob") && !dir.knows("carol"));
        let renamed = UserEvent::Renamed {
            user_id: "carol".into(),
            name: "Carol".into(),
        };
        let gone = dir.apply([
            renamed,
            UserEvent::Deleted {
                user_id: "bob".into(),
            },
            UserEvent::Deleted {
                user_id: "nobody".into(),
            },
        ]);
        assert_eq!(gone, ["bob"]);
        assert_eq!(dir.get("carol").unwrap().name.as_deref(), Some("Carol"));
        // Deleted then created again within one batch: never reported, still there.
        let again = dir.apply([
            UserEvent::Deleted {
                user_id: "alice".into(),
            },
            created("alice"),
        ]);
        assert!(again.is_empty() && dir.knows("alice"));
        assert_eq!(dir.len(), 2);
    }

    #[test]
    fn a_replacement_reports_the_users_it_no_longer_has() {
        let dir = UserDirectory::default();
        dir.replace([created("a"), created("b"), created("c")]);
        let mut gone = dir.replace([created("b"), created("d")]);
        gone.sort();
        assert_eq!(gone, ["a", "c"]);
        assert!(dir.knows("d") && !dir.knows("a"));
    }
}
