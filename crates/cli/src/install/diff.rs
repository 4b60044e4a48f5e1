//! A unified diff of two texts, line by line (Myers' algorithm), for showing what `shoal
//! install` would change. Config files are small and the changes few, so the `O((N+M)·D)` time
//! and the `O(D²)` trace it keeps are nothing.

use std::fmt::Write as _;

/// Lines of context around each change, as `diff -u` gives.
const CONTEXT: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Remove,
    Add,
}

/// `old` and `new` as a unified diff with `---`/`+++` headers naming `label`; empty when they
/// are equal.
pub(crate) fn unified(label: &str, old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    let script = edit_script(&old_lines, &new_lines);
    if script.iter().all(|op| *op == Op::Keep) {
        return String::new();
    }
    let mut out = format!("--- {label}\n+++ {label}\n");
    // Positions in old and new of each step of the script.
    let mut steps = Vec::with_capacity(script.len());
    let (mut at_old, mut at_new) = (0, 0);
    for op in &script {
        steps.push((*op, at_old, at_new));
        match op {
            Op::Keep => (at_old, at_new) = (at_old + 1, at_new + 1),
            Op::Remove => at_old += 1,
            Op::Add => at_new += 1,
        }
    }
    let changed: Vec<usize> = (0..steps.len())
        .filter(|&step| steps[step].0 != Op::Keep)
        .collect();
    let mut index = 0;
    while index < changed.len() {
        // A hunk: changes less than two contexts apart, with context on both sides.
        let first = changed[index];
        let mut last = first;
        while index + 1 < changed.len() && changed[index + 1] - last <= 2 * CONTEXT {
            index += 1;
            last = changed[index];
        }
        index += 1;
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(steps.len());
        let hunk = &steps[start..end];
        let old_count = hunk.iter().filter(|step| step.0 != Op::Add).count();
        let new_count = hunk.iter().filter(|step| step.0 != Op::Remove).count();
        let (_, old_start, new_start) = hunk[0];
        let _ = writeln!(
            out,
            "@@ -{} +{} @@",
            range(old_start, old_count),
            range(new_start, new_count)
        );
        for &(op, at_old, at_new) in hunk {
            let (sign, line) = match op {
                Op::Keep => (' ', old_lines[at_old]),
                Op::Remove => ('-', old_lines[at_old]),
                Op::Add => ('+', new_lines[at_new]),
            };
            out.push(sign);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}

/// A hunk header's range: 1-based start and count, the start of an empty range being the line
/// before it.
fn range(start: usize, count: usize) -> String {
    match count {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{count}", start + 1),
    }
}

/// The shortest edit script turning `old` into `new` (Myers 1986: each round `d` extends the
/// furthest reaching path on every diagonal `k = x - y` by one edit and any run of equal lines;
/// the state before each round is kept to walk back from the end).
#[expect(
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "line counts are far below isize::MAX, and every index is offset to be positive"
)]
fn edit_script(old: &[&str], new: &[&str]) -> Vec<Op> {
    let (n, m) = (old.len() as isize, new.len() as isize);
    let max = n + m;
    let offset = max + 1;
    let at = |k: isize| (k + offset) as usize;
    // From diagonal k, a path comes down (an added line) from k + 1 or across (a removed line)
    // from k - 1, whichever reached further.
    let comes_down = |furthest: &[isize], k: isize, d: isize| {
        k == -d || (k != d && furthest[at(k - 1)] < furthest[at(k + 1)])
    };
    let mut furthest = vec![0_isize; 2 * max as usize + 3];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    'search: for d in 0..=max {
        trace.push(furthest.clone());
        for k in (-d..=d).step_by(2) {
            let mut x = if comes_down(&furthest, k, d) {
                furthest[at(k + 1)]
            } else {
                furthest[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && old[x as usize] == new[y as usize] {
                x += 1;
                y += 1;
            }
            furthest[at(k)] = x;
            if x >= n && y >= m {
                break 'search;
            }
        }
    }
    let mut script = Vec::with_capacity(max as usize);
    let (mut x, mut y) = (n, m);
    for (d, before) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let k = x - y;
        let previous_k = if comes_down(before, k, d) {
            k + 1
        } else {
            k - 1
        };
        let previous_x = before[at(previous_k)];
        let previous_y = previous_x - previous_k;
        while x > previous_x && y > previous_y {
            script.push(Op::Keep);
            x -= 1;
            y -= 1;
        }
        if d > 0 {
            if x == previous_x {
                script.push(Op::Add);
            } else {
                script.push(Op::Remove);
            }
        }
        (x, y) = (previous_x, previous_y);
    }
    script.reverse();
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apply a script to `old`, taking added lines from `new`: it must give `new` back.
    fn replay(old: &[&str], new: &[&str], script: &[Op]) -> Vec<String> {
        let (mut x, mut y) = (0, 0);
        let mut out = Vec::new();
        for op in script {
            match op {
                Op::Keep => {
                    assert_eq!(old[x], new[y], "kept lines differ");
                    out.push(old[x].to_owned());
                    x += 1;
                    y += 1;
                }
                Op::Remove => x += 1,
                Op::Add => {
                    out.push(new[y].to_owned());
                    y += 1;
                }
            }
        }
        assert_eq!(
            (x, y),
            (old.len(), new.len()),
            "the script covers both texts"
        );
        out
    }

    #[test]
    fn scripts_are_shortest_and_replay_to_the_new_text() {
        let cases: [(&str, &str, usize); 7] = [
            ("", "", 0),
            ("a", "", 1),
            ("", "a b", 2),
            ("a b c", "a b c", 0),
            ("a b c a b b a", "c b a b a c", 5),
            ("x a y", "a", 2),
            ("a b c d e f", "a c d x f g", 4),
        ];
        for (old, new, edits) in cases {
            let old: Vec<&str> = old.split_whitespace().collect();
            let new: Vec<&str> = new.split_whitespace().collect();
            let script = edit_script(&old, &new);
            assert_eq!(replay(&old, &new, &script), new, "{old:?} → {new:?}");
            let count = script.iter().filter(|op| **op != Op::Keep).count();
            assert_eq!(count, edits, "{old:?} → {new:?}: {script:?}");
        }
        // A pseudo-random sweep: every script replays, whatever the texts.
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let words = ["a", "b", "c"];
        for _ in 0..500 {
            let old: Vec<&str> = (0..next() % 9)
                .map(|_| words[next() as usize % 3])
                .collect();
            let new: Vec<&str> = (0..next() % 9)
                .map(|_| words[next() as usize % 3])
                .collect();
            let script = edit_script(&old, &new);
            assert_eq!(replay(&old, &new, &script), new, "{old:?} → {new:?}");
        }
    }

    #[test]
    fn hunks_have_three_lines_of_context_and_merge_when_close() {
        let old: String = (1..=20).map(|n| format!("line {n}\n")).collect();
        let new = old
            .replace("line 2\n", "line two\n")
            .replace("line 7\n", "line 7\nline 7½\n")
            .replace("line 18\n", "");
        insta::assert_snapshot!(unified("f.json", &old, &new), @r"
        --- f.json
        +++ f.json
        @@ -1,10 +1,11 @@
         line 1
        -line 2
        +line two
         line 3
         line 4
         line 5
         line 6
         line 7
        +line 7½
         line 8
         line 9
         line 10
        @@ -15,6 +16,5 @@
         line 15
         line 16
         line 17
        -line 18
         line 19
         line 20
        ");
        assert_eq!(unified("f", "same\n", "same\n"), "");
        assert_eq!(
            unified("f", "a", "b"),
            "--- f\n+++ f\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n"
        );
    }
}
