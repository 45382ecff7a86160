//! Hashing and decompression run by the host at native speed (`planrt:task@0.3.0`,
//! interfaces `digest` and `compression`): inside the sandbox sha256 and inflate run as
//! scalar WebAssembly, several times slower.
//!
//! ```ignore
//! use std::io::Read;
//! use planrt_plugin_sdk::codec::{Format, DecodeReader, Hasher};
//!
//! let mut hasher = Hasher::sha256();
//! let tee = hasher.tee(body);                       // hashes what is read through it
//! let mut tar = DecodeReader::new(tee, Format::Gzip); // reads the decompressed bytes
//! // … read `tar` to its end, then:
//! let digest = hex::encode(hasher.finish());
//! ```

use std::io::{self, Read, Write};

use crate::bindings::planrt::task::{compression, digest};

pub use compression::Format;
pub use digest::Algorithm;

/// Bytes of compressed input read from the source at a time.
const INPUT_CHUNK: usize = 256 << 10;
/// Output asked of the host per call (its most).
const OUTPUT_CHUNK: u32 = 1 << 20;

/// A running hash, computed by the host. Also a [`Write`]: `io::copy` into it hashes.
pub struct Hasher(digest::Hasher);

impl Hasher {
    /// A hasher of `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        Self(digest::Hasher::new(algorithm))
    }

    /// A SHA-256 hasher.
    pub fn sha256() -> Self {
        Self::new(Algorithm::Sha256)
    }

    /// Adds `data` to what is hashed.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything added since the hasher was made or last finished; the
    /// hasher then starts over.
    pub fn finish(&mut self) -> Vec<u8> {
        self.0.finish()
    }

    /// A reader passing `inner`'s bytes through while hashing them into this hasher.
    pub fn tee<R: Read>(&mut self, inner: R) -> HashingReader<'_, R> {
        HashingReader {
            inner,
            hasher: self,
        }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads through to its inner reader, hashing every byte read (see [`Hasher::tee`]).
pub struct HashingReader<'h, R> {
    inner: R,
    hasher: &'h mut Hasher,
}

impl<R> HashingReader<'_, R> {
    /// The reader read through.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads the decompressed bytes of the compressed stream `source`, decoded by the host.
/// Its end is the end of the stream, checked (a truncated stream, a wrong checksum or
/// trailing bytes are an `InvalidData` error); everything `source` holds is read.
pub struct DecodeReader<R> {
    source: R,
    decoder: compression::Decoder,
    /// Compressed bytes read, `input[used..filled]` not yet decoded.
    input: Vec<u8>,
    used: usize,
    filled: usize,
    source_ended: bool,
    /// Decompressed bytes, `output[taken..]` not yet read.
    output: Vec<u8>,
    taken: usize,
    /// The stream ended and was checked.
    done: bool,
}

impl<R: Read> DecodeReader<R> {
    /// Decodes `source`, compressed in `format`.
    pub fn new(source: R, format: Format) -> Self {
        Self {
            source,
            decoder: compression::Decoder::new(format),
            input: vec![0; INPUT_CHUNK],
            used: 0,
            filled: 0,
            source_ended: false,
            output: Vec::new(),
            taken: 0,
            done: false,
        }
    }

    /// The compressed source.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.source
    }

    /// Refills the output from the host; `false` once the stream ended.
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            if self.done {
                return Ok(false);
            }
            if self.used == self.filled && !self.source_ended {
                let n = loop {
                    match self.source.read(&mut self.input) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other?,
                    }
                };
                self.used = 0;
                self.filled = n;
                self.source_ended = n == 0;
            }
            let output = if self.used < self.filled {
                let (used, output) = self
                    .decoder
                    .decode(&self.input[self.used..self.filled], OUTPUT_CHUNK)
                    .map_err(invalid_data)?;
                if used == 0 && output.is_empty() {
                    return Err(invalid_data("the decoder made no progress".into()));
                }
                self.used += used as usize;
                output
            } else {
                let output = self.decoder.finish(OUTPUT_CHUNK).map_err(invalid_data)?;
                self.done = output.is_empty();
                output
            };
            if !output.is_empty() {
                self.output = output;
                self.taken = 0;
                return Ok(true);
            }
        }
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.taken == self.output.len() && !self.refill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.output.len() - self.taken);
        buf[..n].copy_from_slice(&self.output[self.taken..self.taken + n]);
        self.taken += n;
        Ok(n)
    }
}
