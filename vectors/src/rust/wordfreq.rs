// wordfreq: word frequencies of every regular file under /inputs, in Rust.
// Words are maximal runs of non-ASCII-whitespace bytes (as in the word count), lower-cased
// in ASCII. The counts are kept in a HashMap (whose hasher is seeded through random_get,
// so by the job's seed) and written sorted: by count, highest first, then by the word's
// bytes. /outputs/freq.txt holds "count word" lines; stdout the number of distinct words.
//
// Built by `make vectors` (vectors/build.py) with Debian's rustc, from vectors/:
//   /usr/bin/rustc --edition 2021 --target wasm32-wasi -C opt-level=3 -C strip=debuginfo \
//       -C linker=wasm-ld -o wordfreq.wasm src/rust/wordfreq.rs
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

fn walk(dir: &Path, counts: &mut HashMap<Vec<u8>, u64>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), counts)?;
        } else if kind.is_file() {
            let mut data = Vec::new();
            fs::File::open(entry.path())?.read_to_end(&mut data)?;
            for word in data.split(|c| c.is_ascii_whitespace() || *c == 0x0b).filter(|w| !w.is_empty()) {
                *counts.entry(word.to_ascii_lowercase()).or_insert(0) += 1;
            }
        }
    }
    Ok(())
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "/inputs".to_string());
    let mut counts = HashMap::new();
    if let Err(err) = walk(Path::new(&root), &mut counts) {
        eprintln!("{}: {}", root, err);
        std::process::exit(1);
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = io::BufWriter::new(fs::File::create("/outputs/freq.txt").expect("/outputs/freq.txt"));
    for (word, count) in &sorted {
        write!(out, "{} ", count).unwrap();
        out.write_all(word).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    println!("{} distinct words", sorted.len());
}
