//! The `/search` JSON is byte for byte what serde writes for the rows, and a kept page never
//! outlives a write.

use agentapi_proxy_client::{ExitReason, SearchResponse, SessionStatus};
use bytes::Bytes;

use super::*;
use crate::store::sessions::SqliteSessions;
use crate::store::sessions::tests::row;
use crate::store::{Location, Store};

/// The page `/search` answered before it was written straight from the rows.
fn expected_page(all: &[SessionRow], filter: &SessionFilter) -> Vec<u8> {
    let mut matching: Vec<&SessionRow> = all
        .iter()
        .filter(|row| filter.user_id.as_ref().is_none_or(|user| &row.user_id == user))
        .filter(|row| filter.status.is_none_or(|status| row.status == status))
        .filter(|row| filter.tags.iter().all(|(k, v)| row.tags.get(k) == Some(v)))
        .collect();
    matching.sort_by(|a, b| (b.started_at_ms, &b.id).cmp(&(a.started_at_ms, &a.id)));
    let total = matching.len() as u64;
    let sessions = matching
        .into_iter()
        .skip(filter.offset as usize)
        .take(filter.limit as usize)
        .map(crate::sessions::summary_of_row)
        .collect();
    serde_json::to_vec(&SearchResponse { sessions, total }).expect("encodes")
}

#[tokio::test]
async fn search_pages_are_byte_for_byte_what_the_rows_serialise_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(Location::File(dir.path().join("store.db"))).expect("store");
    let sessions = PagedStore::new(Arc::new(SqliteSessions::new(store)));
    let statuses = [
        SessionStatus::Starting,
        SessionStatus::Active,
        SessionStatus::Stopping,
        SessionStatus::Exited,
        SessionStatus::Failed,
    ];
    let mut all = Vec::new();
    for index in 0..23usize {
        let tags: &[(&str, &str)] = match index % 3 {
            0 => &[],
            1 => &[("repository", "o/r"), ("note", "quote \" back\\slash \u{1} é")],
            _ => &[("team", "web")],
        };
        let user = if index % 2 == 0 { "alice" } else { "bob \"the\" builder" };
        let mut stored =
            row(&format!("id-{index:02}"), user, 1_700_000_000_000 + index as i64 % 7, tags);
        stored.status = statuses[index % statuses.len()];
        stored.port = (index % 4 != 0).then_some(9000 + index as u16);
        stored.exit_code = (index % 2 == 1).then_some(index as i32 - 10);
        stored.exit_reason = (index % 3 != 2).then_some(ExitReason::LostWhileDown);
        sessions.insert(stored.clone()).await.expect("insert");
        all.push(stored);
    }
    let filters = [
        SessionFilter { limit: 100, ..SessionFilter::default() },
        SessionFilter { limit: 5, ..SessionFilter::default() },
        SessionFilter { limit: 5, offset: 20, ..SessionFilter::default() },
        SessionFilter { limit: 5, offset: 40, ..SessionFilter::default() },
        SessionFilter { limit: 0, ..SessionFilter::default() },
        SessionFilter {
            user_id: Some("alice".into()),
            limit: 4,
            offset: 2,
            ..SessionFilter::default()
        },
        SessionFilter {
            status: Some(SessionStatus::Exited),
            limit: 100,
            ..SessionFilter::default()
        },
        SessionFilter {
            user_id: Some("bob \"the\" builder".into()),
            status: Some(SessionStatus::Active),
            tags: vec![("team".into(), "web".into())],
            limit: 100,
            ..SessionFilter::default()
        },
        SessionFilter {
            tags: vec![("repository".into(), "o/r".into())],
            limit: 3,
            ..SessionFilter::default()
        },
    ];
    for filter in filters {
        let page = sessions.search_json(filter.clone()).await.expect("search");
        let expected = expected_page(&all, &filter);
        assert_eq!(
            String::from_utf8_lossy(&page),
            String::from_utf8_lossy(&expected),
            "{filter:?}"
        );
    }
}

#[tokio::test]
async fn a_kept_search_answer_never_outlives_a_write() {
    let sessions = PagedStore::new(Arc::new(SqliteSessions::new(
        Store::open(Location::Memory).expect("store"),
    )));
    let all = SessionFilter { limit: 10, ..SessionFilter::default() };
    let total = |json: Bytes| serde_json::from_slice::<SearchResponse>(&json).expect("page").total;
    sessions.insert(row("a", "alice", 1, &[])).await.expect("a");
    let first = sessions.search_json(all.clone()).await.expect("search");
    assert_eq!(sessions.search_json(all.clone()).await.expect("again"), first);
    sessions.insert(row("b", "alice", 2, &[])).await.expect("b");
    assert_eq!(total(sessions.search_json(all.clone()).await.expect("after insert")), 2);
    let mut ended = row("b", "alice", 2, &[]);
    ended.status = SessionStatus::Exited;
    sessions.save_state(ended).await.expect("save");
    let page = sessions.search_json(all.clone()).await.expect("after save");
    assert!(String::from_utf8_lossy(&page).contains("\"status\":\"exited\""));
    sessions.delete("b".into()).await.expect("delete");
    assert_eq!(total(sessions.search_json(all).await.expect("after delete")), 1);
}

#[test]
fn strings_are_written_as_serde_writes_them() {
    for text in ["", "plain-id", "quote\"", "back\\slash", "tab\t", "\u{7f}", "é", "\u{1}"] {
        let mut json = Vec::new();
        write_str(&mut json, text);
        assert_eq!(json, serde_json::to_vec(text).expect("encodes"), "{text:?}");
    }
}
