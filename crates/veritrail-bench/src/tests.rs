use crate::events::{ACTORS, Generator, actor_id};
use crate::split;
use crate::stats::{median, percentile};

#[test]
fn percentiles_use_nearest_rank() {
    let samples: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&samples, 50.0), 50.0);
    assert_eq!(percentile(&samples, 99.0), 99.0);
    assert_eq!(percentile(&samples, 100.0), 100.0);
    assert_eq!(percentile(&[], 50.0), 0.0);
    assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
}

#[test]
fn split_covers_everything_once_on_batch_boundaries() {
    let ranges = split(10_500, 3, 1000);
    assert_eq!(ranges.first().map(|r| r.start), Some(0));
    assert_eq!(ranges.last().map(|r| r.end), Some(10_500));
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
        assert_eq!(pair[0].end % 1000, 0);
    }
}

#[test]
fn events_are_deterministic_valid_json_of_realistic_size() {
    let end = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let generator = Generator::new(1, 10_000, end);
    let again = Generator::new(1, 10_000, end);
    let mut total = 0;
    for i in 0..2000 {
        let event = generator.event(i);
        assert_eq!(event.json, again.event(i).json);
        let value: serde_json::Value = serde_json::from_str(&event.json).unwrap();
        assert_eq!(value["actor"]["id"], serde_json::json!(event.row.user_id));
        assert_eq!(value["action"], serde_json::json!(event.row.action));
        let id = value["id"].as_str().unwrap();
        assert!(id.starts_with("evt_") && id.len() == 30, "{id}");
        assert!(event.json.len() < 1000, "{}", event.json);
        total += event.json.len();
    }
    let average = total / 2000;
    assert!((400..=620).contains(&average), "average event size {average}");
}

#[test]
fn actor_ids_are_distinct() {
    let ids: std::collections::HashSet<String> = (0..ACTORS).map(actor_id).collect();
    assert_eq!(ids.len() as u64, ACTORS);
}

#[test]
fn tenants_get_the_ids_of_exactly_their_batches() {
    use crate::backend::deal;
    // 10 batches of 3 events (the last one short), dealt to 2 tenants as bodies and as ids.
    let ids: Vec<String> = (0..29).map(|i| format!("e{i}")).collect();
    let batches: Vec<Vec<String>> = ids.chunks(3).map(<[String]>::to_vec).collect();
    let queues = deal(batches.iter(), 2);
    let tenant_ids: Vec<Vec<String>> = deal(ids.chunks(3), 2).into_iter().map(|c| c.concat()).collect();
    assert_eq!(queues.len(), 2);
    for (queue, wanted) in queues.iter().zip(&tenant_ids) {
        let got: Vec<String> = queue.iter().flat_map(|b| b.iter().cloned()).collect();
        assert_eq!(&got, wanted);
    }
    assert_eq!(tenant_ids[0].len() + tenant_ids[1].len(), ids.len());
    assert_eq!(tenant_ids[0][..3], ["e0", "e1", "e2"]);
    assert_eq!(tenant_ids[1][..3], ["e3", "e4", "e5"]);
    assert_eq!(deal(0..5, 1), vec![vec![0, 1, 2, 3, 4]]);
}
