//! TaskSpawner test requests (`kelos.dev/webhook-test`): each new value is answered once, by the
//! leader; a follower keeps the request for when it leads.

use std::collections::HashMap;

use super::{Effect, Machine, SpawnerTest};

/// A request and whether it was handed to the executor.
struct Entry {
    test: SpawnerTest,
    sent: bool,
}

/// Test requests per (namespace, spawner).
#[derive(Default)]
pub struct Tests {
    by_spawner: HashMap<(String, String), Entry>,
}

fn key(t: &SpawnerTest) -> (String, String) {
    (
        t.spawner.namespace.clone().unwrap_or_default(),
        t.spawner.name.clone().unwrap_or_default(),
    )
}

impl Machine {
    /// A spawner's test value is not answered on the spawner yet: answer it unless this process
    /// already did (the watch repeats the object until the answer is written).
    pub(super) fn test_requested(&mut self, test: SpawnerTest) {
        let entry = self.tests.by_spawner.entry(key(&test));
        match entry {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if o.get().test.value != test.value {
                    o.insert(Entry { test, sent: false });
                } else if !o.get().sent {
                    o.get_mut().test = test;
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Entry { test, sent: false });
            }
        }
        self.tests_due();
    }

    /// Hands every request not sent yet to the executor (leader only).
    pub(super) fn tests_due(&mut self) {
        if !self.leader || self.draining {
            return;
        }
        for e in self.tests.by_spawner.values_mut().filter(|e| !e.sent) {
            e.sent = true;
            self.out.push(Effect::Test(e.test.clone()));
        }
    }
}
