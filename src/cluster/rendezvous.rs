//! Rendezvous (highest-random-weight) hashing: every member scores every
//! instance and the highest score owns it. Removing a member moves only
//! the instances it owned; adding one moves only those it now wins, about
//! 1/N of them.
//!
//! The score is the first 8 bytes of SHA-256 over `identity \0 instance`:
//! stable across processes, platforms and Rust versions (unlike
//! `DefaultHasher`), so every replica computes the same owner.

use sha2::{Digest, Sha256};

use super::Member;
use crate::model::instance::InstanceId;

/// The score of `member` for `id`; higher wins.
pub fn score(identity: &str, id: &InstanceId) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(identity.as_bytes());
    hasher.update([0]);
    hasher.update(id.to_string().as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// The owner of `id` among `members`, `None` when there are none. Ties
/// (practically impossible) go to the smaller identity, so every replica
/// agrees.
pub fn owner<'a>(members: &'a [Member], id: &InstanceId) -> Option<&'a Member> {
    members.iter().max_by(|a, b| {
        score(&a.identity, id)
            .cmp(&score(&b.identity, id))
            .then_with(|| b.identity.cmp(&a.identity))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<Member> {
        names
            .iter()
            .map(|name| Member {
                identity: (*name).into(),
                url: String::new(),
            })
            .collect()
    }

    fn ids(count: usize) -> Vec<InstanceId> {
        (0..count)
            .map(|n| InstanceId::new("probe", format!("root-{n}")))
            .collect()
    }

    #[test]
    fn no_members_no_owner() {
        assert!(owner(&[], &InstanceId::new("a", "")).is_none());
    }

    #[test]
    fn a_join_moves_only_to_the_new_member_and_about_a_quarter() {
        let before = members(&["a", "b", "c"]);
        let after = members(&["a", "b", "c", "d"]);
        let ids = ids(3000);
        let mut moved = 0;
        for id in &ids {
            let old = owner(&before, id).unwrap();
            let new = owner(&after, id).unwrap();
            if old != new {
                assert_eq!(new.identity, "d", "{id} moved between old members");
                moved += 1;
            }
        }
        // Ideal 750 (1/4); allow a wide statistical band.
        assert!((600..900).contains(&moved), "moved {moved} of 3000");
    }

    #[test]
    fn a_leave_moves_only_the_leavers_instances() {
        let before = members(&["a", "b", "c"]);
        let after = members(&["a", "c"]);
        for id in ids(1000) {
            let old = owner(&before, &id).unwrap();
            let new = owner(&after, &id).unwrap();
            if old.identity != "b" {
                assert_eq!(old, new, "{id} moved although its owner stayed");
            }
        }
    }

    #[test]
    fn ownership_is_balanced() {
        let all = members(&["a", "b", "c"]);
        let mut counts = std::collections::BTreeMap::new();
        for id in ids(3000) {
            *counts
                .entry(owner(&all, &id).unwrap().identity.clone())
                .or_insert(0) += 1;
        }
        let max = *counts.values().max().unwrap();
        assert!(
            max < 1150,
            "max {max} of 3000 over 3 (ideal 1000): {counts:?}"
        );
    }
}
