//! What the chat and incident formats show about a Task, read once from the Generic object so
//! every format reports the same facts under the same rules.

use serde_json::Value;

use crate::api::Phase;

/// The facts of one notification.
pub(super) struct Facts {
    /// Task name.
    pub name: String,
    /// Task namespace.
    pub namespace: String,
    /// The TaskSpawner, when the Task has the label.
    pub spawner: Option<String>,
    /// The terminal phase.
    pub phase: Phase,
    /// `agentType (model)`, either alone, or none.
    pub agent: Option<String>,
    /// `$0.42`, when kelos recorded a cost.
    pub cost: Option<String>,
    /// The Task's status message, when not empty.
    pub message: Option<String>,
    /// `status.outputs`, in order.
    pub outputs: Vec<String>,
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

impl Facts {
    /// The facts in a Generic payload object.
    pub fn of(generic: &Value, phase: Phase) -> Facts {
        let t = &generic["task"];
        let agent = match (text(&t["agentType"]), text(&t["model"])) {
            (Some(a), Some(m)) => Some(format!("{a} ({m})")),
            (Some(a), None) => Some(a),
            (None, Some(m)) => Some(m),
            (None, None) => None,
        };
        Facts {
            name: text(&t["name"]).unwrap_or_default(),
            namespace: text(&t["namespace"]).unwrap_or_default(),
            spawner: text(&t["spawner"]),
            phase,
            agent,
            cost: text(&t["usage"]["costUSD"]).map(|c| format!("${c}")),
            message: text(&t["message"]).filter(|m| !m.is_empty()),
            outputs: t["outputs"]
                .as_array()
                .map(|a| a.iter().filter_map(text).collect())
                .unwrap_or_default(),
        }
    }

    /// `succeeded` | `failed`.
    pub fn verb(&self) -> &'static str {
        match self.phase {
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
        }
    }

    /// `kelos Task team/fix-123 failed`.
    pub fn headline(&self) -> String {
        format!(
            "kelos Task {}/{} {}",
            self.namespace,
            self.name,
            self.verb()
        )
    }

    /// The labelled facts shown as fields: Task, Namespace, Spawner, Phase, Agent, Cost.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("Task", self.name.clone()),
            ("Namespace", self.namespace.clone()),
        ];
        if let Some(s) = &self.spawner {
            out.push(("Spawner", s.clone()));
        }
        out.push(("Phase", self.phase.as_str().to_owned()));
        if let Some(a) = &self.agent {
            out.push(("Agent", a.clone()));
        }
        if let Some(c) = &self.cost {
            out.push(("Cost", c.clone()));
        }
        out
    }

    /// Outputs that are web links (shown as links or buttons).
    pub fn web_outputs(&self) -> impl Iterator<Item = &str> {
        self.outputs
            .iter()
            .map(String::as_str)
            .filter(|o| is_web_url(o))
    }
}

/// An `http(s)://` URL with nothing in it that would break a chat link.
pub(super) fn is_web_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && !s.contains(['<', '>', '|', ' ', '"', '(', ')', '[', ']'])
}

/// `s` cut to at most `max` characters, ending in `…` when cut (receivers refuse over-long texts).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// As many of `lines` as fit in `max` characters joined with `\n`, each cut to fit; a last line
/// `… and N more` when some were left out. Cuts whole lines so no link is broken in half.
pub(super) fn lines_within(lines: &[String], max: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for (i, line) in lines.iter().enumerate() {
        let rest = lines.len() - i - 1;
        // Room for this line's separator, and for the `… and N more` note if lines follow.
        let note = if rest > 0 {
            format!("\n… and {rest} more").chars().count()
        } else {
            0
        };
        let sep = usize::from(i > 0);
        let len = line.chars().count();
        if used + sep + len + note <= max {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(line);
            used += sep + len;
            continue;
        }
        if i == 0 {
            // Even the first line does not fit: cut it.
            let keep = max.saturating_sub(note);
            out.push_str(&truncate(line, keep));
            used = out.chars().count();
            if rest == 0 {
                return out;
            }
            let more = format!("\n… and {rest} more");
            if used + more.chars().count() <= max {
                out.push_str(&more);
            }
            return out;
        }
        let left = lines.len() - i;
        let more = format!("\n… and {left} more");
        if used + more.chars().count() <= max {
            out.push_str(&more);
        }
        return out;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_within_the_limit() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("ééééé", 3).chars().count(), 3);
        let lines: Vec<String> = (0..100).map(|i| format!("line number {i}")).collect();
        for max in [0, 5, 20, 100, 1000] {
            let out = lines_within(&lines, max);
            assert!(out.chars().count() <= max, "{max}: {out}");
        }
        let out = lines_within(&lines, 100);
        assert!(out.starts_with("line number 0\nline number 1\n"), "{out}");
        assert!(out.ends_with("more"), "{out}");
        assert_eq!(
            lines_within(&lines[..2], 100),
            "line number 0\nline number 1"
        );
        assert_eq!(lines_within(&["x".repeat(50)], 10).chars().count(), 10);
    }
}
