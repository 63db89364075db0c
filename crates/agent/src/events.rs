//! The pods' (and the node's) events as kubectl lists them: `kubectl get events` (the API
//! server's table printer, printEvent in pkg/printers/internalversion) and
//! `kubectl events` (kubectl's own, pkg/cmd/events). Both sort by when an
//! event was last seen and show that time as kubectl's short durations.

use crate::db::StoredEvent;

/// Which of kubectl's two event lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `kubectl get events`: LAST SEEN is when it was last seen; the object
    /// is `pod/NAME` (its kind in lower case).
    Get,
    /// `kubectl events`: LAST SEEN of an event seen more than once is
    /// `2m (x3 over 5m)`; the object is `Pod/NAME`.
    Events,
}

/// Sort `events` as kubectl sorts them (SortableEvents: by the last time
/// seen, oldest first); ties keep the order they were recorded in.
pub fn sort(events: &mut [StoredEvent]) {
    events.sort_by(|a, b| {
        let key = |e: &StoredEvent| (time(&e.event.last), time(&e.event.first), e.id);
        key(a).cmp(&key(b))
    });
}

/// The table's header: `LAST SEEN TYPE REASON OBJECT MESSAGE`, with
/// `NAMESPACE` first for every namespace.
pub fn header(all_namespaces: bool) -> Vec<String> {
    let mut h = vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
    if all_namespaces {
        h.insert(0, "NAMESPACE");
    }
    h.into_iter().map(String::from).collect()
}

/// An event's row at `now`; its object is `pod/NAME` or `node/NAME`
/// (`Pod/NAME`, `Node/NAME` in `kubectl events`).
pub fn row(
    e: &StoredEvent,
    all_namespaces: bool,
    style: Style,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let first = since(&e.event.first, now);
    let last = match e.event.last.as_str() {
        "" => first.clone(),
        t => since(t, now),
    };
    let (seen, object) = match style {
        Style::Get => (last, format!("{}/{}", e.kind.to_lowercase(), e.pod)),
        Style::Events if e.event.count > 1 => (
            format!("{last} (x{} over {first})", e.event.count),
            format!("{}/{}", e.kind, e.pod),
        ),
        Style::Events => (first, format!("{}/{}", e.kind, e.pod)),
    };
    let mut row = vec![
        seen,
        e.event.type_.clone(),
        e.event.reason.clone(),
        object,
        e.event.message.trim().to_string(),
    ];
    if all_namespaces {
        row.insert(0, e.namespace.clone());
    }
    row
}

/// The header and a row for each of `events`, sorted.
pub fn rows(
    events: &[StoredEvent],
    all_namespaces: bool,
    style: Style,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Vec<String>> {
    let mut events = events.to_vec();
    sort(&mut events);
    std::iter::once(header(all_namespaces))
        .chain(events.iter().map(|e| row(e, all_namespaces, style, now)))
        .collect()
}

/// kubectl's translateTimestampSince: the short duration since `t`
/// (`5s`, `2m3s`, `3h`), `<unknown>` for no time.
pub fn since(t: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    match time(t) {
        Some(t) => podrun_kubelet::printer::human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn time(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::EventRow;

    fn at(s: i64) -> String {
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-06T05:00:00Z").unwrap();
        (t0 + chrono::Duration::seconds(s))
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn event(id: i64, pod: &str, reason: &str, count: i64, first: i64, last: i64) -> StoredEvent {
        StoredEvent {
            id,
            kind: "Pod".into(),
            namespace: "shop".into(),
            pod: pod.into(),
            event: EventRow {
                type_: if reason == "BackOff" {
                    "Warning"
                } else {
                    "Normal"
                }
                .into(),
                reason: reason.into(),
                message: format!(" {reason} happened \n"),
                count,
                first: at(first),
                last: at(last),
            },
        }
    }

    fn now(s: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(&at(s))
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn durations_are_kubectls_short_ones() {
        let n = now(0);
        for (ago, want) in [
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (123, "2m3s"),
            (300, "5m"),
            (700, "11m"),
            (3 * 3600 + 600, "3h10m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
        ] {
            assert_eq!(since(&at(-ago), n), want, "{ago} s ago");
        }
        assert_eq!(since("", n), "<unknown>");
        assert_eq!(since("yesterday", n), "<unknown>");
        // A clock a second ahead reads 0s, more is invalid (HumanDuration).
        assert_eq!(since(&at(1), n), "0s");
        assert_eq!(since(&at(5), n), "<invalid>");
    }

    #[test]
    fn events_sort_by_when_they_were_last_seen() {
        let mut events = vec![
            event(1, "web", "Pulled", 1, 0, 0),
            event(2, "web", "BackOff", 4, 10, 100),
            event(3, "db", "Started", 1, 50, 50),
            event(4, "db", "Killing", 1, 50, 50),
        ];
        sort(&mut events);
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 3, 4, 2]);
    }

    #[test]
    fn get_events_shows_the_last_time_and_kubectl_events_the_count() {
        let events = [
            event(2, "web", "BackOff", 3, 10, 100),
            event(1, "web", "Pulled", 1, 0, 0),
        ];
        let rows = rows(&events, false, Style::Get, now(105));
        assert_eq!(
            rows,
            [
                vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
                vec!["105s", "Normal", "Pulled", "pod/web", "Pulled happened"],
                vec!["5s", "Warning", "BackOff", "pod/web", "BackOff happened"],
            ]
        );
        let all = super::rows(&events, true, Style::Events, now(105));
        assert_eq!(all[0][0], "NAMESPACE");
        assert_eq!(
            all[2],
            [
                "shop",
                "5s (x3 over 95s)",
                "Warning",
                "BackOff",
                "Pod/web",
                "BackOff happened"
            ]
        );
        assert_eq!(all[1][1], "105s");
    }
}
