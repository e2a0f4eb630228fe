//! Backoff: the retry delays with jitter and a cap.

use batchling_core::backoff::*;

#[test]
fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
    let mut jitter = Jitter::new(1);
    for (attempt, step) in [(1, 100), (2, 200), (3, 400), (4, 500), (9, 500)] {
        let wait = jitter.backoff_ms(attempt, 100, 500);
        assert!(
            (step / 2..=step).contains(&wait),
            "attempt {attempt}: {wait}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_waits() {
    let waits = |seed| {
        let mut j = Jitter::new(seed);
        (1..6)
            .map(|a| j.backoff_ms(a, 1_000, 60_000))
            .collect::<Vec<_>>()
    };
    assert_eq!(waits(42), waits(42));
    assert_ne!(waits(42), waits(43));
}
