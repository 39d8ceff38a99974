//! Bounded mutation testing for the code that reads untrusted bytes
//! (manifests, patches, selectors, frames, archive paths): every input
//! derived from a seed by bit flips, byte changes, cuts, splices and
//! repeats must give a clean result or a clean error, never a panic.
//! Seeded, so a failure prints the seed and case that replay it.
//! (Coverage-guided cargo-fuzz targets need crates this build cannot fetch;
//! these run in every `make test`.)

/// xorshift64*: small, deterministic, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the formats under test.
const INTERESTING: &[u8] = b"{}[]\":,-\n #&|!=()0\xff\x00\\'.*";

/// One to four random edits of `input`.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 if at < out.len() => out[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 => out.truncate(at),
            4 if at < out.len() => {
                let end = (at + rng.below(16) + 1).min(out.len());
                out.drain(at..end);
            }
            5 => {
                // Splice in part of another input.
                let other = corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(32)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            _ if at < out.len() => {
                // Repeat a run: deep nesting, long tokens.
                let end = (at + rng.below(8) + 1).min(out.len());
                let run = out[at..end].to_vec();
                for _ in 0..rng.below(64) {
                    out.splice(at..at, run.iter().copied());
                }
            }
            _ => out.push(INTERESTING[rng.below(INTERESTING.len())]),
        }
    }
    out
}

/// Runs `check` on `cases` mutations of the corpus, reporting the seed and
/// case of a panic.
pub fn each_mutation(seed: u64, cases: usize, corpus: &[&[u8]], mut check: impl FnMut(&[u8])) {
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let base = corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, corpus);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        if outcome.is_err() {
            panic!(
                "seed {seed} case {case} panicked on input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_vary() {
        let corpus: &[&[u8]] = &[b"{\"a\": [1, 2]}"];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| mutate(&mut rng, corpus[0], corpus))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let distinct: std::collections::HashSet<_> = run(7).into_iter().collect();
        assert!(distinct.len() > 40, "{}", distinct.len());
    }
}
