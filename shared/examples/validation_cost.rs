//! What validating `onCompletion` costs, from JSON text to the report: the old way (parse a
//! `serde_json::Value`, then validate it) against `validate_on_completion_json`, on the 8-hook
//! benchmark input.
//!
//! Run: `cargo run --release -p kelos-hooks-shared --example validation_cost`
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use kelos_hooks_shared::fixtures::eight_hooks_json;
use kelos_hooks_shared::validation::{
    Context, Report, validate_on_completion, validate_on_completion_json,
};
use serde_json::Value;

const ROUNDS: usize = 7;
const ITERATIONS: u32 = 20_000;
const PATH: &str = "spec.onCompletion";

/// Median over `ROUNDS` rounds of the mean time of one call, in nanoseconds.
fn median_ns(mut call: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                call();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(ITERATIONS)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let text = eight_hooks_json();
    let ctx = Context::default();
    let value: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("benchmark input is not JSON: {e}");
            std::process::exit(1);
        }
    };
    let old: Report = validate_on_completion(&value, PATH, &ctx);
    let new = validate_on_completion_json(&text, PATH, &ctx);
    if old != new || !new.is_valid() {
        eprintln!("reports differ or the input is invalid: {old:?} vs {new:?}");
        std::process::exit(1);
    }

    // Warm up caches and the allocator.
    median_ns(|| {
        black_box(validate_on_completion_json(black_box(&text), PATH, &ctx));
    });
    let parse = median_ns(|| {
        black_box(serde_json::from_str::<Value>(black_box(&text)).ok());
    });
    let value_validation = median_ns(|| {
        black_box(validate_on_completion(black_box(&value), PATH, &ctx));
    });
    let text_validation = median_ns(|| {
        black_box(validate_on_completion_json(black_box(&text), PATH, &ctx));
    });

    println!(
        "input: {} hooks, {} bytes; median of {ROUNDS} rounds of {ITERATIONS} calls",
        8,
        text.len()
    );
    println!("serde_json::from_str::<Value>          {parse:>8.0} ns");
    println!("validate_on_completion(&Value)         {value_validation:>8.0} ns");
    println!(
        "old path: text -> Value -> Report      {:>8.0} ns",
        parse + value_validation
    );
    println!("validate_on_completion_json(&str)      {text_validation:>8.0} ns");
    println!(
        "speed-up, text to Report               {:>8.1}x",
        (parse + value_validation) / text_validation
    );
}
