//! What the collector does with one object, decided from what it read (pure).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::graph::{Node, FOREGROUND, ORPHAN};

/// What a live lookup of an owner found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists with the referenced uid and is not waiting on its dependents.
    Solid,
    /// Gone, replaced by another object of the same name, or not a valid reference.
    Dangling,
    /// Being deleted in the foreground: its dependents must go first.
    WaitingForDependents,
}

/// Classifies an owner from a live read: `None` = not found; else its uid, whether it is
/// being deleted, and its finalizers.
pub fn owner_state(
    reference: &OwnerReference,
    live: Option<(&str, bool, &[String])>,
) -> OwnerState {
    match live {
        None => OwnerState::Dangling,
        Some((uid, _, _)) if uid != reference.uid => OwnerState::Dangling,
        Some((_, true, finalizers)) if finalizers.iter().any(|f| f == FOREGROUND) => {
            OwnerState::WaitingForDependents
        }
        Some(_) => OwnerState::Solid,
    }
}

/// What to do with a dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Keep it, without the references to these owner uids.
    RemoveRefs(Vec<String>),
    /// Delete it with this propagation policy.
    Delete(&'static str),
}

/// Upstream's attemptToDeleteItem: an object with a live owner stays (losing references
/// to dead or foreground-deleting owners); one without is deleted, in the foreground
/// when an owner waits on it and it has dependents of its own, else per its finalizers.
pub fn decide(
    owners: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
    finalizers: &[String],
) -> Action {
    if owners.is_empty() {
        return Action::Nothing;
    }
    let of = |s: OwnerState| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, st)| *st == s)
            .map(|(r, _)| r.uid.clone())
            .collect()
    };
    let solid = of(OwnerState::Solid);
    let dangling = of(OwnerState::Dangling);
    let waiting = of(OwnerState::WaitingForDependents);
    if !solid.is_empty() {
        let remove: Vec<String> = dangling.into_iter().chain(waiting).collect();
        return if remove.is_empty() {
            Action::Nothing
        } else {
            Action::RemoveRefs(remove)
        };
    }
    if !waiting.is_empty() && has_dependents {
        return Action::Delete("Foreground");
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    Action::Delete(if has(ORPHAN) {
        "Orphan"
    } else if has(FOREGROUND) {
        "Foreground"
    } else {
        "Background"
    })
}

/// A foreground-deleting owner: which dependents to look at, and whether its
/// `foregroundDeletion` finalizer can go (no dependent blocks it any more).
pub fn foreground_step(owner: &Node, dependents: &[&Node]) -> (Vec<String>, bool) {
    let check: Vec<String> = dependents
        .iter()
        .filter(|d| !d.deleting || d.deleting_dependents())
        .map(|d| d.uid.clone())
        .collect();
    let blocked = dependents.iter().any(|d| d.blocks(&owner.uid));
    (check, !blocked)
}

/// `refs` without the references to `uids`.
pub fn without_refs(refs: &[OwnerReference], uids: &[String]) -> Vec<OwnerReference> {
    refs.iter()
        .filter(|r| !uids.contains(&r.uid))
        .cloned()
        .collect()
}

/// `finalizers` without `f`.
pub fn without_finalizer(finalizers: &[String], f: &str) -> Vec<String> {
    finalizers.iter().filter(|x| *x != f).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garbagecollector::graph::tests::{node, owner_ref};

    #[test]
    fn owner_state_cases() {
        let r = owner_ref("u1", false);
        let none: &[String] = &[];
        let fg = vec![FOREGROUND.to_string()];
        let orphan = vec![ORPHAN.to_string()];
        type Live<'a> = Option<(&'a str, bool, &'a [String])>;
        let cases: &[(&str, Live, OwnerState)] = &[
            ("not found", None, OwnerState::Dangling),
            (
                "same name, other uid",
                Some(("u2", false, none)),
                OwnerState::Dangling,
            ),
            ("live", Some(("u1", false, none)), OwnerState::Solid),
            (
                "foreground finalizer but not deleting",
                Some(("u1", false, &fg)),
                OwnerState::Solid,
            ),
            (
                "foreground deleting",
                Some(("u1", true, &fg)),
                OwnerState::WaitingForDependents,
            ),
            (
                "orphan deleting",
                Some(("u1", true, &orphan)),
                OwnerState::Solid,
            ),
        ];
        for (name, live, want) in cases {
            assert_eq!(owner_state(&r, *live), *want, "{name}");
        }
    }

    #[test]
    fn decide_cases() {
        use OwnerState::*;
        let r = |uid: &str, s| (owner_ref(uid, true), s);
        let none: Vec<String> = vec![];
        let orphan = vec![ORPHAN.to_string()];
        let fg = vec![FOREGROUND.to_string()];
        type Case<'a> = (
            &'a str,
            Vec<(OwnerReference, OwnerState)>,
            bool,
            &'a Vec<String>,
            Action,
        );
        let cases: Vec<Case> = vec![
            ("no owners", vec![], false, &none, Action::Nothing),
            (
                "all solid",
                vec![r("a", Solid), r("b", Solid)],
                false,
                &none,
                Action::Nothing,
            ),
            (
                "one dangling one solid",
                vec![r("a", Dangling), r("b", Solid)],
                false,
                &none,
                Action::RemoveRefs(vec!["a".into()]),
            ),
            (
                "waiting and solid",
                vec![r("a", WaitingForDependents), r("b", Solid)],
                false,
                &none,
                Action::RemoveRefs(vec!["a".into()]),
            ),
            (
                "all dangling",
                vec![r("a", Dangling), r("b", Dangling)],
                false,
                &none,
                Action::Delete("Background"),
            ),
            (
                "dangling, item orphans its own dependents",
                vec![r("a", Dangling)],
                false,
                &orphan,
                Action::Delete("Orphan"),
            ),
            (
                "dangling, item foreground",
                vec![r("a", Dangling)],
                false,
                &fg,
                Action::Delete("Foreground"),
            ),
            (
                "waiting owner, item has dependents",
                vec![r("a", WaitingForDependents)],
                true,
                &none,
                Action::Delete("Foreground"),
            ),
            (
                "waiting owner, no dependents",
                vec![r("a", WaitingForDependents)],
                false,
                &none,
                Action::Delete("Background"),
            ),
        ];
        for (name, owners, deps, fins, want) in cases {
            assert_eq!(decide(&owners, deps, fins), want, "{name}");
        }
    }

    #[test]
    fn foreground_step_cases() {
        let owner = node("o", &[], true, &[FOREGROUND]);
        let blocking = node("b", &[owner_ref("o", true)], false, &[]);
        let blocking_deleting = node("bd", &[owner_ref("o", true)], true, &[]);
        let loose = node("l", &[owner_ref("o", false)], false, &[]);
        let (check, done) = foreground_step(&owner, &[&blocking, &loose]);
        assert_eq!(check, vec!["b", "l"]);
        assert!(!done, "a blocking dependent holds the owner");
        let (check, done) = foreground_step(&owner, &[&blocking_deleting]);
        assert!(
            check.is_empty(),
            "dependents already being deleted need nothing more"
        );
        assert!(
            !done,
            "a blocking dependent holds the owner until it is gone"
        );
        let (check, done) = foreground_step(&owner, &[&loose]);
        assert_eq!(check, vec!["l"]);
        assert!(done, "non-blocking dependents do not hold the owner");
        assert!(foreground_step(&owner, &[]).1);
    }

    #[test]
    fn list_edits() {
        let refs = vec![owner_ref("a", true), owner_ref("b", false)];
        assert_eq!(
            without_refs(&refs, &["a".into()]),
            vec![owner_ref("b", false)]
        );
        let f = vec!["x".to_string(), ORPHAN.to_string()];
        assert_eq!(without_finalizer(&f, ORPHAN), vec!["x".to_string()]);
    }
}
