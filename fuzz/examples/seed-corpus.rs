//! Writes the seed corpus of every fuzz target: `seed-corpus DIR` fills `DIR/<target>/`
//! (an example, not a bin: `cargo fuzz build` builds every bin with libFuzzer).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seed-corpus DIR");
        std::process::exit(2);
    };
    for target in planrt_fuzz::seeds::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in planrt_fuzz::seeds::of(target).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}
